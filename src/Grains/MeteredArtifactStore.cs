using System.Diagnostics.Metrics;
using Influence.Core.Storage;

namespace Influence.Grains;

/// <summary>
/// The silo's artifact store with its traffic counted: bytes read and written (influence_store_read_bytes_total,
/// influence_store_written_bytes_total on /metrics), whatever the store behind it (a folder, Azure Blob).
/// Summed over the silos, they are a job's store traffic (docs/benchmarks.md measures them per job).
/// </summary>
public sealed class MeteredArtifactStore(IArtifactStore inner) : IArtifactStore
{
    private IArtifactStore Inner { get; } = inner;

    public bool Exists(string key) => Inner.Exists(key);

    public Stream OpenRead(string key) => new CountingStream(Inner.OpenRead(key), InfluenceMetrics.StoreBytesRead);

    public void Write(string key, Action<Stream> write) =>
        Inner.Write(key, s =>
        {
            using var counted = new CountingStream(s, InfluenceMetrics.StoreBytesWritten, leaveOpen: true);
            write(counted);
        });

    public void DeletePrefix(string prefix) => Inner.DeletePrefix(prefix);

    public string Describe(string key) => Inner.Describe(key);

    /// <summary>A pass-through stream that adds the bytes it moves to a counter.</summary>
    private sealed class CountingStream(Stream inner, Counter<long> counter, bool leaveOpen = false) : Stream
    {
        public override bool CanRead => inner.CanRead;
        public override bool CanSeek => inner.CanSeek;
        public override bool CanWrite => inner.CanWrite;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override void Flush() => inner.Flush();
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void SetLength(long value) => inner.SetLength(value);

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            if (n > 0) counter.Add(n);
            return n;
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            inner.Write(buffer);
            counter.Add(buffer.Length);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && !leaveOpen) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
