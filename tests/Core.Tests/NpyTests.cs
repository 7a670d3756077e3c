using System.Diagnostics;
using System.Globalization;
using Influence.Core.Storage;
using Xunit;

namespace Influence.Core.Tests;

public class NpyTests
{
    /// <summary>Debian's python3 with numpy (scripts/install-test-tools.sh installs python3-numpy): the independent reader.</summary>
    public static string NumpyRead(string path, string expression)
    {
        const string python = "/usr/bin/python3";
        if (!File.Exists(python)) throw new InvalidOperationException($"{python} is missing: run scripts/install-test-tools.sh (./test.sh does)");
        var start = new ProcessStartInfo(python, ["-c", $"import numpy as np, sys; a = np.load(sys.argv[1], mmap_mode='r'); print({expression})", path])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(start)!;
        string output = p.StandardOutput.ReadToEnd(), error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"numpy could not read {path}: {error}");
        return output.Trim();
    }

    private static string Write(Npy.DType dtype, double[][] rows)
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("npy-").FullName, "m.npy");
        using (var s = File.Create(path))
        {
            Npy.WriteHeader(s, dtype, rows.Length, rows[0].Length);
            foreach (var row in rows) Npy.WriteRow(s, dtype, row);
        }
        return path;
    }

    [Theory]
    [InlineData(Npy.DType.Float32, "float32")]
    [InlineData(Npy.DType.Float64, "float64")]
    public void Numpy_reads_what_is_written_row_by_row(Npy.DType dtype, string numpyName)
    {
        var rows = Enumerable.Range(0, 3).Select(k => Enumerable.Range(0, 5).Select(j => (k - 1.25) * Math.Pow(10, j - 2) / 3).ToArray()).ToArray();
        var path = Write(dtype, rows);
        Assert.Equal($"{numpyName} (3, 5) True", NumpyRead(path, "a.dtype, a.shape, a.flags['C_CONTIGUOUS']"));
        var values = NumpyRead(path, "' '.join(repr(float(v)) for v in a.ravel())").Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        var expected = rows.SelectMany(r => r).Select(v => dtype == Npy.DType.Float32 ? (float)v : v).ToArray();
        Assert.Equal(expected, values);

        using var s = File.OpenRead(path);
        var header = Npy.ReadHeader(s, "m.npy");
        Assert.Equal(dtype, header.DType);
        Assert.Equal([3L, 5], header.Shape);
        Assert.Equal(0, header.DataOffset % 64); // numpy's alignment of the data
        var row = new double[5];
        Npy.ReadRow(s, header, 2, row);
        Assert.Equal(expected[10..], row);
    }

    [Fact]
    public void A_file_that_does_not_match_its_header_is_refused_naming_it()
    {
        var path = Write(Npy.DType.Float64, [[1.0, 2.0], [3.0, 4.0]]);
        using (var s = File.OpenWrite(path)) s.SetLength(s.Length - 8);
        using var r = File.OpenRead(path);
        var e = Assert.Throws<InvalidDataException>(() => Npy.ReadHeader(r, "influence.npy"));
        Assert.Equal("influence.npy: 24 bytes of data for shape (2, 2), expected 32", e.Message);
        Assert.Contains("not a version 1 .npy file", Assert.Throws<InvalidDataException>(() => Npy.ReadHeader(new MemoryStream(new byte[20]), "x.npy")).Message);
    }
}
