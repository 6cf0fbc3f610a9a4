import Foundation
import KilnCore

/// Writes files so that a crash never leaves a half-written one, and so that nothing planted in a shared
/// directory can redirect the write.
///
/// A write creates a temporary file in the destination's directory under a fresh random name,
/// `.<target>.tmp-<16 hex digits>`, opened with `O_CREAT | O_EXCL | O_NOFOLLOW`: it is always a new file that
/// this call created, never an existing file or the target of a symlink planted at that name (a taken name is
/// skipped for another random one, up to ``maxTemporaryAttempts`` names). The temporary has mode 0600 while it
/// is written; it is flushed to disk, given its final mode (0644 minus the process umask) and renamed over the
/// destination, and the directory is flushed so that the rename is durable. On any failure the temporary is
/// removed and the error names the destination and the cause; the destination is then as it was.
///
/// Symlinks: `rename` replaces the directory entry at the destination name itself. A symlink AT the
/// destination name is therefore replaced by the new regular file and the file it pointed to is untouched. A
/// symlinked directory in the destination's path is followed, as it is by any program that opens the path.
///
/// A write killed before its rename leaves its temporary behind; ``removeLeftoverTemporaries(in:)`` removes
/// such files (the trainer calls it on its save directory when a run ends and when one resumes).
public enum AtomicFile {
    /// How many names are tried for a temporary before the write gives up.
    public static let maxTemporaryAttempts = 100

    /// The mode a written file gets before the process umask is applied.
    static let finalMode: mode_t = 0o644

    public static func write(_ bytes: [UInt8], to path: String) throws {
        try write(bytes, to: path, temporaryName: randomTemporaryName(for:), afterWriting: nil)
    }

    /// Writes the text's UTF-8 in place (a large graph file is not copied into an array first).
    public static func write(_ text: String, to path: String) throws {
        var text = text
        try text.withUTF8 { utf8 in
            try write(UnsafeRawBufferPointer(utf8), to: path, temporaryName: randomTemporaryName(for:), afterWriting: nil)
        }
    }

    /// The write itself, with its test hooks: `temporaryName` gives the temporary's file name for the
    /// destination's file name (production: ``randomTemporaryName(for:)``); `afterWriting` is called with the
    /// temporary's path once the bytes are in it, before it gets its final mode and is renamed.
    static func write(_ bytes: [UInt8], to path: String, temporaryName: (String) -> String,
                      afterWriting: ((String) throws -> Void)?) throws {
        try bytes.withUnsafeBytes { try write($0, to: path, temporaryName: temporaryName, afterWriting: afterWriting) }
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String, temporaryName: (String) -> String,
                      afterWriting: ((String) throws -> Void)?) throws {
        try write(to: path, temporaryName: temporaryName, afterWriting: afterWriting) { try $0(bytes) }
    }

    /// Writes what `produce` hands its `emit` function, piece by piece, so that a large file (a graph file
    /// with its weights) never has to be held whole in memory; the same guarantees as `write(_:to:)`.
    public static func write(to path: String, streaming produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        try write(to: path, temporaryName: randomTemporaryName(for:), afterWriting: nil, produce)
    }

    static func write(to path: String, temporaryName: (String) -> String, afterWriting: ((String) throws -> Void)?,
                      _ produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let (dir, name) = try split(path)
        let (fd, tmp) = try createTemporary(in: dir, for: name, destination: path, temporaryName: temporaryName)
        var isOpen = true
        var renamed = false
        defer {
            if isOpen { close(fd) }
            if !renamed { unlink(tmp) }
        }
        try produce { try writeAll(fd, $0, destination: path, temporary: tmp) }
        try afterWriting?(tmp)
        let mode = finalMode & ~processUmask()
        guard fchmod(fd, mode) == 0 else {
            let e = errno
            throw failure(path, "cannot set the mode of \(tmp)", e)
        }
        guard fsync(fd) == 0 else {
            let e = errno
            throw failure(path, "cannot flush \(tmp)", e)
        }
        isOpen = false
        guard close(fd) == 0 else {
            let e = errno
            throw failure(path, "cannot close \(tmp)", e)
        }
        guard rename(tmp, path) == 0 else {
            let e = errno
            throw failure(path, "cannot rename \(tmp) over it", e)
        }
        renamed = true
        // Make the rename itself durable (some file systems cannot flush a directory: not an error).
        let dfd = Foundation.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    /// `.<name>.tmp-<16 lowercase hex digits>` from the system's secure random generator; the destination's
    /// name is shortened (to 200 bytes) so that the temporary's name stays within the file system's limit.
    /// Runs `body` on a private temporary copy of `bytes` (created exclusively, never through a symlink, in
    /// the system's temporary directory), removed afterwards: for libraries that read archives from files.
    package static func withTemporaryCopy<T>(of bytes: [UInt8], named name: String, _ body: (String) throws -> T) throws -> T {
        let dir = FileManager.default.temporaryDirectory.path
        let (fd, tmp) = try createTemporary(in: dir, for: name, destination: name, temporaryName: randomTemporaryName(for:))
        defer { unlink(tmp) }
        do {
            try bytes.withUnsafeBytes { try writeAll(fd, $0, destination: name, temporary: tmp) }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        return try body(tmp)
    }

    public static func randomTemporaryName(for name: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = String(generator.next() as UInt64, radix: 16)
        let suffix = String(repeating: "0", count: 16 - hex.count) + hex
        var stem = String.UnicodeScalarView()
        var bytes = 0
        for s in name.unicodeScalars {
            bytes += UTF8.width(s)
            if bytes > 200 { break }
            stem.append(s)
        }
        return "." + String(stem) + ".tmp-" + suffix
    }

    /// Whether `name` has the form of an AtomicFile temporary: `.<target>.tmp-<16 hex digits>`, or
    /// `.<target>.tmp-<process id>` as written by earlier versions of Kiln.
    public static func isTemporaryName(_ name: String) -> Bool {
        guard name.hasPrefix("."), let r = name.range(of: ".tmp-", options: .backwards),
              r.lowerBound > name.index(after: name.startIndex) else { return false }
        let tail = name[r.upperBound...]
        if tail.count == 16 && tail.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) { return true }
        return !tail.isEmpty && tail.count <= 10 && tail.allSatisfy { ("0"..."9").contains($0) }
    }

    /// Removes the regular files in `directory` whose names have the form of AtomicFile's temporaries, left
    /// there by writes that were killed before their rename, and returns their names. Symlinks and other
    /// entries are left alone. Call it only when no other writer is using `directory` (a temporary being
    /// written would be removed under it); a missing directory has nothing to remove.
    @discardableResult
    public static func removeLeftoverTemporaries(in directory: String) -> [String] {
        removeRegularFiles(in: directory, where: isTemporaryName)
    }

    /// Removes the regular files (not symlinks, not directories) in `directory` whose names satisfy
    /// `predicate`, and returns the names removed.
    @discardableResult
    package static func removeRegularFiles(in directory: String, where predicate: (String) -> Bool) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for name in names.sorted() where predicate(name) {
            let path = directory + "/" + name
            // attributesOfItem does not follow a symlink: it describes the entry itself.
            guard let type = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType,
                  type == .typeRegular else { continue }
            if unlink(path) == 0 { removed.append(name) }
        }
        return removed
    }

    /// The destination's directory (`.` for a bare name) and file name.
    static func split(_ path: String) throws -> (dir: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else {
            guard !path.isEmpty else { throw KilnError.io("cannot write a file with an empty path") }
            return (".", path)
        }
        let name = String(path[path.index(after: slash)...])
        guard !name.isEmpty, name != ".", name != ".." else {
            throw KilnError.io("cannot write \(path): the path does not name a file")
        }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, name)
    }

    /// Creates and opens a new temporary in `dir`, trying fresh names while the chosen one is taken.
    static func createTemporary(in dir: String, for name: String, destination: String,
                                temporaryName: (String) -> String) throws -> (Int32, String) {
        for _ in 0..<maxTemporaryAttempts {
            let candidate = temporaryName(name)
            guard !candidate.isEmpty, !candidate.contains("/"), candidate != ".", candidate != ".." else {
                throw KilnError.io("cannot write \(destination): invalid temporary file name \"\(candidate)\"")
            }
            let tmp = (dir == "/" ? "" : dir) + "/" + candidate
            let fd = Foundation.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 { return (fd, tmp) }
            let e = errno
            if e == EEXIST || e == EINTR { continue }
            throw failure(destination, "cannot create a temporary file in \(dir)", e)
        }
        throw KilnError.io("cannot write \(destination): no free temporary file name in \(dir) after \(maxTemporaryAttempts) tries (every name chosen already exists)")
    }

    static func writeAll(_ fd: Int32, _ buf: UnsafeRawBufferPointer, destination: String, temporary: String) throws {
        guard let base = buf.baseAddress else { return }
        var written = 0
        while written < buf.count {
            let n = Foundation.write(fd, base + written, buf.count - written)
            if n > 0 {
                written += n
            } else if n < 0 {
                let e = errno
                if e == EINTR { continue }
                throw failure(destination, "cannot write \(temporary)", e)
            } else {
                throw failure(destination, "cannot write \(temporary)", EIO)
            }
        }
    }

    /// The process's file mode creation mask. On Linux it is read from `/proc/self/status` without changing
    /// it; elsewhere (or when that file is unavailable) it is read by setting it and restoring it at once,
    /// under a lock so that two writes in this process do not interleave there.
    static func processUmask() -> mode_t {
        #if os(Linux)
        if let line = procStatus()?.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
           let mask = mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8) {
            return mask
        }
        #endif
        return umaskLock.withLock {
            let mask = umask(0o077)
            umask(mask)
            return mask
        }
    }

    private static let umaskLock = NSLock()

    #if os(Linux)
    /// `/proc/self/status` (whose size `stat` reports as 0, so it is read until end of file).
    private static func procStatus() -> String? {
        let fd = Foundation.open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { data.append(contentsOf: chunk[0..<n]) } else if n < 0 && errno == EINTR { continue } else { break }
        }
        return String(decoding: data, as: UTF8.self)
    }
    #endif

    static func failure(_ destination: String, _ step: String, _ code: Int32) -> KilnError {
        KilnError.io("cannot write \(destination): \(step): \(String(cString: strerror(code)))")
    }
}
