import Foundation
import KilnCore
import KilnGraph

/// nnabla's `Monitor`: a directory that monitors write their series into.
///
/// `resumingAt` is for a training run that continues from a checkpoint: each monitor file made under this
/// monitor keeps the lines an earlier run wrote with an index below it (checked as ``MonitorLog`` reads
/// them) and continues after them, instead of starting empty as nnabla's does.
public final class Monitor {
    public let savePath: String
    public let resumeIndex: Int?

    public init(_ savePath: String, resumingAt resumeIndex: Int? = nil) throws {
        self.savePath = savePath
        self.resumeIndex = resumeIndex
        do {
            try FileManager.default.createDirectory(atPath: savePath, withIntermediateDirectories: true)
        } catch {
            throw KilnError.io("cannot create monitor directory \(savePath): \(error.localizedDescription)")
        }
    }

    /// The file of a monitor named `name` with suffix (".series.txt"): spaces become dashes, as in nnabla.
    func path(_ name: String, _ suffix: String) -> String {
        savePath + "/" + name.replacingOccurrences(of: " ", with: "-") + suffix
    }

    func file(_ name: String, _ suffix: String) throws -> MonitorFile {
        try MonitorFile(path: path(name, suffix), keepingBefore: resumeIndex)
    }
}

/// A monitor file, appended to line by line.
///
/// It is made as a new regular file through `AtomicFile` (holding the kept lines of an earlier run, or
/// nothing), so a symlink planted at its name in a shared directory is replaced, never followed; it is
/// then opened for appending with `O_NOFOLLOW`. A failed append is reported once on standard error: the
/// monitors' `add` does not throw (as in nnabla), and training goes on.
final class MonitorFile {
    let path: String
    /// The index of the last line kept from an earlier run.
    let lastIndex: Int?
    private let fd: Int32
    private var failed = false

    init(path: String, keepingBefore resumeIndex: Int?) throws {
        self.path = path
        var kept: [UInt8] = []
        var last: Int?
        if let resumeIndex, FileManager.default.fileExists(atPath: path) {
            let bytes = try FileBytes.read(path: path, limit: MonitorLog.maxBytes, what: "monitor file")
            (kept, last) = try MonitorLog.lines(bytes, before: resumeIndex, name: path)
        }
        lastIndex = last
        try AtomicFile.write(kept, to: path)
        fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw KilnError.io("cannot open monitor file \(path): \(String(cString: strerror(e)))")
        }
    }

    deinit { close(fd) }

    func append(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        var done = 0
        while done < bytes.count && !failed {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { done += n; continue }
            let e = n < 0 ? errno : EIO
            if e == EINTR { continue }
            failed = true
            FileHandle.standardError.write(Data("kiln: warning: cannot write monitor file \(path): \(String(cString: strerror(e))); its later lines are lost\n".utf8))
        }
    }
}

/// nnabla's `MonitorSeries`: averages the values added over `interval` indices and writes
/// `index mean` lines to `<Name-with-dashes>.series.txt` (and prints them when verbose).
public final class MonitorSeries {
    public let name: String
    public let interval: Int
    public var verbose: Bool
    private let file: MonitorFile?
    private var flushAt = -1
    private var buffer: [Double] = []
    /// The last flushed (index, mean), for progress displays and tests.
    public private(set) var last: (index: Int, value: Double)?

    public init(_ name: String, monitor: Monitor? = nil, interval: Int = 1, verbose: Bool = true) throws {
        guard interval > 0 else { throw KilnError.invalidData("MonitorSeries '\(name)': interval must be positive") }
        self.name = name
        self.interval = interval
        self.verbose = verbose
        file = try monitor.map { try $0.file(name, ".series.txt") }
        flushAt = file?.lastIndex ?? -1
    }

    public func add(_ index: Int, _ value: Double) {
        buffer.append(value)
        guard index - flushAt >= interval else { return }
        let mean = buffer.reduce(0, +) / Double(buffer.count)
        if verbose { print("iter=\(index) {\(name)}=\(mean)") }
        file?.append("\(index) \(MonitorSeries.g(mean))")
        last = (index, mean)
        flushAt = index
        buffer.removeAll(keepingCapacity: true)
    }

    public func add(_ index: Int, _ value: Float) { add(index, Double(value)) }

    /// Python's "{:g}": 6 significant digits, trailing zeros removed.
    static func g(_ v: Double) -> String {
        var s = String(format: "%g", v)
        if s == "-0" { s = "0" }
        return s
    }
}

/// nnabla's `MonitorTimeElapsed`: every `interval` indices writes `index seconds-since-last iterations
/// seconds-total` to `<Name-with-dashes>.timer.txt`.
public final class MonitorTimeElapsed {
    public let name: String
    public let interval: Int
    public var verbose: Bool
    private let file: MonitorFile?
    private var flushAt = -1
    private let start: Double
    private var lap: Double

    public init(_ name: String, monitor: Monitor? = nil, interval: Int = 100, verbose: Bool = true) throws {
        guard interval > 0 else { throw KilnError.invalidData("MonitorTimeElapsed '\(name)': interval must be positive") }
        self.name = name
        self.interval = interval
        self.verbose = verbose
        file = try monitor.map { try $0.file(name, ".timer.txt") }
        flushAt = file?.lastIndex ?? -1
        start = Date().timeIntervalSince1970
        lap = start
    }

    public func add(_ index: Int) {
        guard index - flushAt >= interval else { return }
        let now = Date().timeIntervalSince1970
        let elapsed = now - lap, total = now - start, iterations = index - flushAt
        lap = now
        if verbose { print("iter=\(index) {\(name)}=\(elapsed)[sec/\(iterations)iter] \(total)[sec]") }
        file?.append("\(index) \(elapsed) \(iterations) \(total)")
        flushAt = index
    }
}
