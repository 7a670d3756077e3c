using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Influence.Core.Storage;

/// <summary>
/// A write-only stream to a new file opened with O_DIRECT (Linux on x64 or arm64): large artifacts
/// (a 493 MB partial Hessian) go from an aligned buffer to the disk without passing through the
/// page cache. On this project's VMs a buffered write of memory the guest has not touched yet ran
/// at about 0.4 GB/s, a direct one at 2.5 GB/s. <see cref="TryCreate"/> returns null where O_DIRECT
/// is not available (another OS or architecture, a file system that refuses it), and the caller
/// writes the ordinary way.
/// </summary>
public sealed class DirectFileWriter : Stream
{
    /// <summary>O_DIRECT wants the buffer's address, the write's length and its file offset in multiples of the device's block; 4 KiB covers them.</summary>
    private const int Alignment = 4096;
    private const int BufferBytes = 8 << 20;

    private readonly SafeFileHandle handle;
    private readonly unsafe byte* buffer;
    private int buffered;
    private long written;
    private bool closed;

    private unsafe DirectFileWriter(SafeFileHandle handle)
    {
        this.handle = handle;
        buffer = (byte*)NativeMemory.AlignedAlloc(BufferBytes, Alignment);
    }

    /// <summary>Creates <paramref name="path"/> (which must not exist) for direct writing, or returns null where that is not supported.</summary>
    public static DirectFileWriter? TryCreate(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        int direct = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 0x4000,
            Architecture.Arm64 => 0x10000,
            _ => 0,
        };
        if (direct == 0) return null;
        const int writeOnly = 0x1, create = 0x40, exclusive = 0x80, closeOnExec = 0x80000;
        int fd = Open(path, writeOnly | create | exclusive | closeOnExec | direct, Convert.ToInt32("644", 8));
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            const int invalidArgument = 22; // the file system does not do O_DIRECT
            if (errno == invalidArgument) return null;
            throw new IOException($"cannot create {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        return new DirectFileWriter(new SafeFileHandle(fd, ownsHandle: true));
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int FileSync(SafeFileHandle fd);

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => !closed;
    public override long Length => written + buffered;
    // (After Complete, written is the file's length and buffered is 0.)
    public override long Position { get => Length; set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override unsafe void Write(ReadOnlySpan<byte> data)
    {
        ObjectDisposedException.ThrowIf(closed, this);
        while (!data.IsEmpty)
        {
            int n = Math.Min(data.Length, BufferBytes - buffered);
            data[..n].CopyTo(new Span<byte>(buffer + buffered, n));
            buffered += n;
            data = data[n..];
            if (buffered == BufferBytes) WriteBuffer(BufferBytes);
        }
    }

    private unsafe void WriteBuffer(int bytes)
    {
        RandomAccess.Write(handle, new ReadOnlySpan<byte>(buffer, bytes), written);
        written += bytes;
        buffered = 0;
    }

    /// <summary>Nothing: a partial block can only be written last (O_DIRECT offsets stay aligned); <see cref="Complete"/> writes it.</summary>
    public override void Flush() { }

    /// <summary>
    /// Writes the last, partial block (padded to the alignment, then the file cut back to its
    /// length) and syncs the file (O_DIRECT bypasses the page cache, not the disk's own cache or the
    /// metadata). Nothing can be written after.
    /// </summary>
    public unsafe void Complete()
    {
        ObjectDisposedException.ThrowIf(closed, this);
        long length = written + buffered;
        if (buffered > 0)
        {
            int padded = (buffered + Alignment - 1) / Alignment * Alignment;
            new Span<byte>(buffer + buffered, padded - buffered).Clear();
            WriteBuffer(padded);
            RandomAccess.SetLength(handle, length);
        }
        if (FileSync(handle) != 0) throw new IOException($"fsync failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        written = length;
        closed = true;
        handle.Dispose();
        NativeMemory.AlignedFree(buffer);
    }

    protected override unsafe void Dispose(bool disposing)
    {
        if (!closed)
        {
            closed = true;
            handle.Dispose();
            NativeMemory.AlignedFree(buffer);
        }
        base.Dispose(disposing);
    }
}
