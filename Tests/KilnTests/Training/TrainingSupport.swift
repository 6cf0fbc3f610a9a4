import Foundation
@testable import Kiln

/// A fresh, empty directory under the system temporary directory.
func trainingTempDir(_ tag: String) throws -> String {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("kiln-\(tag)-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

/// The lines of a text file (without the trailing empty line).
func textLines(_ path: String) throws -> [String] {
    guard let d = FileManager.default.contents(atPath: path) else { throw KilnError.io("cannot read \(path)") }
    return String(decoding: d, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        .map(String.init).filter { !$0.isEmpty }
}

/// An ordered record of events, shared by callbacks.
final class EventLog {
    var events: [String] = []
    func add(_ e: String) { events.append(e) }
}

/// A stand-in for a distributed communicator: records the arrays it is given and, like an all-reduce sum
/// over `workers` identical workers, multiplies them in place (and divides back with `division`). Its world
/// has `workers` ranks, of which it is `rank`; every rank holds the same values, so a broadcast changes
/// nothing and a gather repeats the array.
final class FakeCommunicator: Communicator {
    var calls: [[NDArray]] = []
    var divisions: [Bool] = []
    var bucketStarts = 0
    var broadcasts = 0
    let workers: Float
    let rank: Int
    let log: EventLog?
    var size: Int { Int(workers) }
    init(workers: Float = 1, rank: Int = 0, log: EventLog? = nil) { self.workers = workers; self.rank = rank; self.log = log }
    func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws {
        log?.add("allReduce")
        calls.append(arrays)
        divisions.append(division)
        for a in arrays { for k in 0..<a.count { a.floats[k] *= workers; if division { a.floats[k] /= workers } } }
    }
    func startAllReduce(_ values: UnsafeMutableBufferPointer<Float>) throws {
        log?.add("startAllReduce")
        bucketStarts += 1
        for k in values.indices { values[k] *= workers }
    }
    func bcast(_ arrays: [NDArray], src: Int) throws { broadcasts += 1 }
    func allGather(_ array: NDArray, _ arrays: [NDArray]) throws { for a in arrays { try a.copy(from: array) } }
}
