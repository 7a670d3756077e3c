using System.IO.Compression;
using Influence.Core.Data;

namespace Influence.Core.Tests;

public class DataReaderTests
{
    private static string Write(string content)
    {
        var path = Path.Combine(Path.GetTempPath(), $"influence-test-{Guid.NewGuid():N}.csv");
        File.WriteAllText(path, content);
        return path;
    }

    [Fact]
    public void Reads_bundled_iris_exactly()
    {
        var iris = TestData.Iris();
        Assert.Equal(105, iris.Train.Count);
        Assert.Equal(45, iris.Test.Count);
        Assert.Equal(4, iris.Train.FeatureCount);
        Assert.Equal(3, iris.ClassCount);
        var firstLine = File.ReadLines(TestData.DataFile("iris_train.csv")).Skip(1).First().Split(',');
        Assert.Equal(int.Parse(firstLine[0]), iris.Train.Labels[0]);
        Assert.Equal(double.Parse(firstLine[1], System.Globalization.CultureInfo.InvariantCulture), iris.Train.Features[0]);
    }

    /// <summary>Shards copy their rows straight from the dataset's array into a tensor: the rows, labels and dtype must be those of the slice.</summary>
    [Theory]
    [InlineData(0, 105, Influence.Core.Models.Precision.Float64)]
    [InlineData(17, 18, Influence.Core.Models.Precision.Float64)]
    [InlineData(40, 97, Influence.Core.Models.Precision.Float32)]
    [InlineData(50, 50, Influence.Core.Models.Precision.Float64)]
    public void Row_range_tensors_equal_the_sliced_dataset(int start, int end, Influence.Core.Models.Precision precision)
    {
        var train = TestData.Iris().Train;
        var spec = Influence.Core.Models.ModelSpec.LogisticRegression(4, 3, 0.1, precision);
        using var direct = Influence.Core.Objectives.DataTensors.From(train, start, end, spec, TorchSharp.torch.CPU);
        var slice = train.Slice(start, end);
        Assert.Equal(spec.ScalarType, direct.X.dtype);
        Assert.Equal(new long[] { end - start, 4 }, direct.X.shape);
        if (end > start) // an empty tensor has no data to read
        {
            var expected = slice.Features.Select(v => precision == Influence.Core.Models.Precision.Float32 ? (double)(float)v : v).ToArray();
            Assert.Equal(expected, direct.X.to(TorchSharp.torch.ScalarType.Float64).data<double>().ToArray());
            Assert.Equal(slice.Labels.Select(l => (long)l).ToArray(), direct.Y.data<long>().ToArray());
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Influence.Core.Objectives.DataTensors.From(train, 100, 106, spec, TorchSharp.torch.CPU));
    }

    [Fact]
    public void Pixel_scale_divides_features()
    {
        var d = CsvDatasetReader.Read(Write("label,p0,p1\n1,255,51\n0,0,102\n"), 255);
        Assert.Equal(new[] { 1.0, 0.2, 0.0, 0.4 }, d.Features);
    }

    [Theory]
    [InlineData("label,a,b\n1,2\n", "line 2 (row 0)", "2 fields where the header has 3")]
    [InlineData("label,a,b\n1,2,3\n0,x,3\n", "line 3 (row 1), column 2 ('a')", "'x' is not a number")]
    [InlineData("label,a,b\n1,NaN,3\n", "column 2 ('a')", "not finite")]
    [InlineData("label,a,b\n1,2,Infinity\n", "column 3 ('b')", "not finite")]
    [InlineData("label,a,b\n-1,2,3\n", "column 1 ('label')", "not a non-negative integer")]
    [InlineData("label,a,b\n1.5,2,3\n", "column 1 ('label')", "not a non-negative integer")]
    [InlineData("label,a,b\ncat,2,3\n", "column 1 ('label')", "not a non-negative integer")]
    [InlineData("label,a,b\n1,,3\n", "column 2 ('a')", "empty field")]
    [InlineData("", null, "empty file")]
    [InlineData("label,a,b\n", null, "no data rows")]
    public void Bad_csv_names_file_row_and_problem(string content, string? where, string problem)
    {
        var path = Write(content);
        var e = Assert.Throws<DataFormatException>(() => CsvDatasetReader.Read(path));
        Assert.Contains(path, e.Message);
        if (where is not null) Assert.Contains(where, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Missing_file_is_named()
    {
        var e = Assert.Throws<DataFormatException>(() => new DatasetSpec("/no/such/file.csv").Load());
        Assert.Contains("/no/such/file.csv", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Train_and_test_must_fit_together()
    {
        var train = CsvDatasetReader.Read(Write("label,a,b\n0,1,2\n1,3,4\n"));
        var narrow = CsvDatasetReader.Read(Write("label,a\n0,1\n"));
        var unseen = CsvDatasetReader.Read(Write("label,a,b\n0,1,2\n5,3,4\n"));
        var mismatch = Assert.Throws<DataFormatException>(() => TrainTestData.Combine(train, narrow)).Message;
        Assert.Contains("1 features per row, but the training set", mismatch);
        Assert.Contains("has 2", mismatch);
        Assert.Contains("row 1", Assert.Throws<DataFormatException>(() => TrainTestData.Combine(train, unseen)).Message);
        var single = CsvDatasetReader.Read(Write("label,a\n0,1\n0,2\n"));
        Assert.Contains("single class", Assert.Throws<DataFormatException>(() => TrainTestData.Combine(single, single)).Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Reads_idx_images_and_labels(bool gzip)
    {
        var dir = Directory.CreateTempSubdirectory("influence-idx").FullName;
        var images = Path.Combine(dir, "train-images-idx3-ubyte" + (gzip ? ".gz" : ""));
        var labels = Path.Combine(dir, "train-labels-idx1-ubyte" + (gzip ? ".gz" : ""));
        byte[] imageBytes = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 255, 51, 102, 1, 2, 3, 4];
        byte[] labelBytes = [0, 0, 8, 1, 0, 0, 0, 2, 7, 3];
        WriteMaybeGzip(images, imageBytes, gzip);
        WriteMaybeGzip(labels, labelBytes, gzip);
        var d = new DatasetSpec(images, null, 255).Load(); // labels found by the MNIST naming
        Assert.Equal(2, d.Count);
        Assert.Equal(4, d.FeatureCount);
        Assert.Equal(new[] { 7, 3 }, d.Labels);
        Assert.Equal(1.0, d.Features[1]);
        Assert.Equal(0.2, d.Features[2], 15);

        WriteMaybeGzip(labels, [0, 0, 8, 1, 0, 0, 0, 3, 7, 3, 1], gzip);
        Assert.Contains("3 labels for 2 images", Assert.Throws<DataFormatException>(() => new DatasetSpec(images, labels).Load()).Message);
    }

    private static void WriteMaybeGzip(string path, byte[] bytes, bool gzip)
    {
        using var f = File.Create(path);
        if (!gzip) { f.Write(bytes); return; }
        using var z = new GZipStream(f, CompressionLevel.Fastest);
        z.Write(bytes);
    }
}
