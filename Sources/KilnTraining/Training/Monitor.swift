import Foundation
import KilnCore

/// nnabla's `Monitor`: a directory that monitors write their series into.
public final class Monitor {
    public let savePath: String

    public init(_ savePath: String) throws {
        self.savePath = savePath
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
}

/// Appends lines to a monitor file; the file is truncated when the monitor is made, as in nnabla.
final class MonitorFile {
    let path: String
    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: Data()) else {
            throw KilnError.io("cannot create monitor file \(path)")
        }
    }
    func append(_ line: String) {
        guard let h = FileHandle(forWritingAtPath: path) else { return }
        h.seekToEndOfFile()
        h.write(Data((line + "\n").utf8))
        h.closeFile()
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
        file = try monitor.map { try MonitorFile(path: $0.path(name, ".series.txt")) }
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
        file = try monitor.map { try MonitorFile(path: $0.path(name, ".timer.txt")) }
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
