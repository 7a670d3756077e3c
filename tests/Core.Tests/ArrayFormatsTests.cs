using Influence.Core.Data;
using Influence.Core.Storage;
using ParquetSharp;

namespace Influence.Core.Tests;

/// <summary>
/// Datasets and results in the formats numpy and pandas use. The .npy inputs were written by numpy
/// (scripts/numpy/make_reference_arrays.py, checked in); Parquet is written and read back here by
/// ParquetSharp (Apache Arrow's C++ implementation), independent of the Parquet.Net code under test.
/// </summary>
public class ArrayFormatsTests
{
    private static string Numpy(string name) => Path.Combine(TestData.RepoRoot, "tests", "Core.Tests", "Data", "numpy", name);
    private static string Temp(string name) => Path.Combine(Directory.CreateTempSubdirectory("influence-arrays-").FullName, name);

    [Fact]
    public void Npy_images_and_labels_written_by_numpy_load_as_rows()
    {
        var d = new DatasetSpec(Numpy("images_u8.npy"), Numpy("labels_i64.npy"), 255).Load();
        Assert.Equal(5, d.Count);
        Assert.Equal(12, d.FeatureCount); // 1 × 3 × 4, flattened C × H × W
        Assert.Equal([0, 1, 2, 1, 0], d.Labels);
        for (int i = 0; i < 60; i++) Assert.Equal(i * 4 % 256 / 255.0, d.Features[i], 12);

        var f = new DatasetSpec(Numpy("features_f32.npy"), Numpy("labels_u8.npy")).Load();
        Assert.Equal([0.5, -1.25, 3.0, 1.0, 2.0, 3.0, -0.125, 0.0, 7.5, 4.0, 5.0, 6.0], f.Features);
        Assert.Equal([1, 0, 1, 0], f.Labels);
        Assert.Equal((3, (int?)null), new DatasetSpec(Numpy("features_f32.npy"), Numpy("labels_u8.npy")).PeekShape());
    }

    [Fact]
    public void Npy_inputs_numpy_can_write_but_that_are_not_a_dataset_are_refused_naming_the_file()
    {
        string Problem(string features, string? labels) =>
            Assert.Throws<DataFormatException>(() => new DatasetSpec(Numpy(features), labels is null ? null : Numpy(labels)).Load()).Message;

        Assert.Contains("big_endian.npy", Problem("big_endian.npy", "labels_u8.npy"));
        Assert.Contains("'>f8'", Problem("big_endian.npy", "labels_u8.npy"));
        Assert.Contains("Fortran-order", Problem("fortran.npy", "labels_u8.npy"));
        Assert.Contains("needs its labels", Problem("features_f32.npy", null));
        Assert.Contains("5 labels for 4 rows", Problem("features_f32.npy", "labels_i64.npy"));
        Assert.Contains("labels are a vector", Problem("features_f32.npy", "features_f32.npy"));
        var cut = Temp("cut.npy");
        File.WriteAllBytes(cut, File.ReadAllBytes(Numpy("features_f32.npy"))[..^4]);
        Assert.Contains("bytes of data for shape (4, 3)", Assert.Throws<DataFormatException>(() => new DatasetSpec(cut, Numpy("labels_u8.npy")).Load()).Message);
    }

    /// <summary>A Parquet dataset written by ParquetSharp: the label as int32, features as float32, float64 and uint8.</summary>
    private static string WriteParquetDataset(bool withNull = false, bool withText = false, string labelName = "label")
    {
        var path = Temp("data.parquet");
        var columns = new List<Column> { new Column<int>(labelName), new Column<float>("a"), new Column<double?>("b"), new Column<byte>("c") };
        if (withText) columns.Add(new Column<string>("name"));
        using (var writer = new ParquetFileWriter(path, columns.ToArray()))
        {
            using var group = writer.AppendRowGroup();
            using (var w = group.NextColumn().LogicalWriter<int>()) w.WriteBatch([2, 0, 1]);
            using (var w = group.NextColumn().LogicalWriter<float>()) w.WriteBatch([0.5f, 1.5f, -2f]);
            using (var w = group.NextColumn().LogicalWriter<double?>()) w.WriteBatch([10.0, withNull ? null : 20.0, 30.0]);
            using (var w = group.NextColumn().LogicalWriter<byte>()) w.WriteBatch([255, 0, 51]);
            if (withText) using (var w = group.NextColumn().LogicalWriter<string>()) w.WriteBatch(["x", "y", "z"]);
            writer.Close();
        }
        return path;
    }

    [Fact]
    public void A_Parquet_table_written_by_another_implementation_loads_with_its_label_column()
    {
        var d = new DatasetSpec(WriteParquetDataset(), null, 2).Load();
        Assert.Equal([2, 0, 1], d.Labels);
        Assert.Equal(3, d.FeatureCount);
        Assert.Equal([0.25, 5, 127.5, 0.75, 10, 0, -1, 15, 25.5], d.Features);

        Assert.Contains("row 1, column 'b': empty (null)", Assert.Throws<DataFormatException>(() => new DatasetSpec(WriteParquetDataset(withNull: true)).Load()).Message);
        var textError = Assert.Throws<DataFormatException>(() => new DatasetSpec(WriteParquetDataset(withText: true)).Load()).Message;
        Assert.True(textError.Contains("column 'name': text, not a number"), textError);
        Assert.Contains("no 'label' column among y, a, b, c", Assert.Throws<DataFormatException>(() => new DatasetSpec(WriteParquetDataset(labelName: "y")).Load()).Message);
        var notParquet = Temp("x.parquet");
        File.WriteAllText(notParquet, "label,a\n1,2\n");
        Assert.Contains("not a readable Parquet file", Assert.Throws<DataFormatException>(() => new DatasetSpec(notParquet).Load()).Message);
    }

    [Fact]
    public void A_result_table_as_Parquet_has_typed_columns_that_another_reader_reads_back()
    {
        var csv = Temp("t.csv");
        File.WriteAllText(csv, "test_index,influence,self,config\n0,-1.5,NaN,\"depth=1, width=8\"\n7,2.25E-05,,plain\n12,3,4.5,\n");
        var parquet = Path.ChangeExtension(csv, ".parquet");
        using (var s = File.Create(parquet)) ParquetTables.FromCsv(csv, s);

        using var file = new ParquetFileReader(parquet);
        var schema = file.FileMetaData.Schema;
        Assert.Equal(["test_index", "influence", "self", "config"], Enumerable.Range(0, schema.NumColumns).Select(i => schema.Column(i).Name));
        Assert.Equal([PhysicalType.Int64, PhysicalType.Double, PhysicalType.Double, PhysicalType.ByteArray], Enumerable.Range(0, schema.NumColumns).Select(i => schema.Column(i).PhysicalType));
        using var group = file.RowGroup(0);
        Assert.Equal(3, group.MetaData.NumRows);
        Assert.Equal([0L, 7L, 12L], group.Column(0).LogicalReader<long>().ReadAll(3));
        Assert.Equal([-1.5, 2.25e-5, 3.0], group.Column(1).LogicalReader<double>().ReadAll(3));
        var self = group.Column(2).LogicalReader<double?>().ReadAll(3);
        Assert.True(double.IsNaN(self[0]!.Value));
        Assert.Null(self[1]);
        Assert.Equal(4.5, self[2]);
        Assert.Equal(new string?[] { "depth=1, width=8", "plain", null }, group.Column(3).LogicalReader<string?>().ReadAll(3).AsEnumerable());
        file.Close();
    }
}
