import Foundation

/// Reads whole files for the loaders, deciding before it allocates: the path must name a regular file
/// (a device such as `/dev/zero`, a FIFO or a directory would make a plain read hang or never end), and the
/// file's size, taken from the open descriptor, must be within `limit`. Exactly that many bytes are read; a
/// file that changes size while it is read is an error.
package enum FileBytes {
    package static func read(path: String, limit: Int?, what: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let e = errno
            throw KilnError.io("cannot read \(what) \(path): \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let e = errno
            throw KilnError.io("cannot read \(what) \(path): \(String(cString: strerror(e)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            let kind = (info.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "not a regular file"
            throw KilnError.io("cannot read \(what) \(path): it is \(kind)")
        }
        let size = Int(info.st_size)
        if let limit, size > limit {
            throw KilnError.io("cannot read \(what) \(path): its \(size) bytes exceed the memory budget of \(limit) bytes")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { buf in
            while done < size {
                let n = Foundation.read(fd, buf.baseAddress! + done, size - done)
                if n > 0 {
                    done += n
                } else if n == 0 {
                    throw KilnError.io("cannot read \(what) \(path): it ended after \(done) of its \(size) bytes")
                } else {
                    let e = errno
                    if e == EINTR { continue }
                    throw KilnError.io("cannot read \(what) \(path): \(String(cString: strerror(e)))")
                }
            }
        }
        return bytes
    }
}
