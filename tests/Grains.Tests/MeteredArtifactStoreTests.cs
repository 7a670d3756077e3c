using System.Diagnostics.Metrics;
using Influence.Core.Storage;

namespace Influence.Grains.Tests;

/// <summary>The store's traffic counters count exactly the bytes that cross the store, on a real folder store.</summary>
public sealed class MeteredArtifactStoreTests
{
    [Fact]
    public void Bytes_written_and_read_are_counted_once_each()
    {
        var root = Directory.CreateTempSubdirectory("metered-store-");
        try
        {
            long read = 0, written = 0;
            // The counters exist before the listener starts (it is told of existing instruments at Start).
            var (readCounter, writtenCounter) = (InfluenceMetrics.StoreBytesRead, InfluenceMetrics.StoreBytesWritten);
            using var listener = new MeterListener();
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument == readCounter || instrument == writtenCounter) l.EnableMeasurementEvents(instrument);
            };
            listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
            {
                if (instrument == readCounter) Interlocked.Add(ref read, value);
                else if (instrument == writtenCounter) Interlocked.Add(ref written, value);
            });
            listener.Start();

            var store = new MeteredArtifactStore(new LocalArtifactStore(root.FullName));
            var payload = Enumerable.Range(0, 100_000).Select(i => (byte)i).ToArray();
            store.Write("jobs/a/x.bin", s => { s.Write(payload, 0, 40_000); s.Write(payload.AsSpan(40_000)); });
            Assert.Equal(payload.Length, written);
            Assert.Equal(payload.Length, new FileInfo(Path.Combine(root.FullName, "jobs", "a", "x.bin")).Length);

            using (var s = store.OpenRead("jobs/a/x.bin"))
            {
                var back = new byte[payload.Length];
                s.ReadExactly(back);
                Assert.Equal(payload, back);
                Assert.Equal(0, s.Read(new byte[10])); // at the end: nothing more is counted
            }
            Assert.Equal(payload.Length, read);
            Assert.True(store.Exists("jobs/a/x.bin"));
        }
        finally { root.Delete(recursive: true); }
    }
}
