import Foundation
import Testing
@testable import Kiln
@testable import KilnTraining

/// Monitor files read back (`MonitorLog`), and what a resumed run does with them: keeps the lines before its
/// checkpoint and continues on the same cadence as a run that was never interrupted.
struct MonitorLogTests {
    @Test func readsSeriesAndTimerLines() throws {
        let series = try MonitorLog.parse(Array("9 2.30259\n19 1.5\n\n29 nan\r\n39 inf\n49 -1e-05\n".utf8), name: "s")
        #expect(series.map(\.index) == [9, 19, 29, 39, 49])
        #expect(series[0].values == [2.30259] && series[1].values == [1.5] && series[4].values == [-1e-05])
        #expect(series[2].values[0].isNaN && series[3].values == [.infinity])
        let timer = try MonitorLog.parse(Array("99 1.25 100 1.25\n199 1.5 100 2.75\n".utf8), name: "t")
        #expect(timer == [.init(index: 99, values: [1.25, 100, 1.25]), .init(index: 199, values: [1.5, 100, 2.75])])
        #expect(try MonitorLog.parse([], name: "empty").isEmpty)
    }

    @Test(arguments: [
        ("1.5 2\n", "m:1: the index '1.5' is not a non-negative integer"),
        ("-1 2\n", "m:1: the index '-1' is not a non-negative integer"),
        ("99999999999999999999 2\n", "m:1: the index '99999999999999999999' is not a non-negative integer that fits 64 bits"),
        ("9 1\n9 2\n", "m:2: index 9 does not follow 9"),
        ("9 1\n4 2\n", "m:2: index 4 does not follow 9"),
        ("9 1\n19 2 3\n", "m:2: 3 fields where earlier lines have 2"),
        ("9 abc\n", "m:1: 'abc' is not a number"),
        ("9 0x1p3\n", "m:1: '0x1p3' is not a number"),
        ("9\n", "m:1: a monitor line holds an index and 1 to 16 values, this one has 1 field(s)"),
    ])
    func badLinesAreErrorsNamingTheLine(_ text: String, _ message: String) {
        let error = #expect(throws: KilnError.self) { _ = try MonitorLog.parse(Array(text.utf8), name: "m") }
        #expect("\(error.map { "\($0)" } ?? "")".contains(message), "\(String(describing: error))")
    }

    /// A run interrupted after iteration 29 and resumed at 30 leaves the same files as one that ran 0..<50
    /// (the values are a function of the index, as a resumed run's are of the restored state).
    @Test func aResumedRunContinuesTheFile() throws {
        let whole = try trainingTempDir("monitor-whole"), resumed = try trainingTempDir("monitor-resumed")
        defer { for d in [whole, resumed] { try? FileManager.default.removeItem(atPath: d) } }
        func value(_ i: Int) -> Double { Double(i % 7) * 0.5 }
        let a = try MonitorSeries("Training loss", monitor: try Monitor(whole), interval: 10, verbose: false)
        for i in 0..<50 { a.add(i, value(i)) }
        // The interrupted run also wrote line 39 (after its checkpoint at 29) before it was killed.
        let b = try MonitorSeries("Training loss", monitor: try Monitor(resumed), interval: 10, verbose: false)
        for i in 0..<45 { b.add(i, value(i)) }
        let expected = try textLines(whole + "/Training-loss.series.txt")
        #expect(expected.count == 5 && expected[0] == "9 1.2")        // (0 + 0.5 + ... + 3 + 0 + 0.5 + 1) / 10
        let c = try MonitorSeries("Training loss", monitor: try Monitor(resumed, resumingAt: 30), interval: 10, verbose: false)
        #expect(try textLines(resumed + "/Training-loss.series.txt") == Array(expected.prefix(3)))
        for i in 30..<50 { c.add(i, value(i)) }
        #expect(try textLines(resumed + "/Training-loss.series.txt") == expected)
    }

    @Test func aCorruptFileStopsTheResumeNamingTheLine() throws {
        let dir = try trainingTempDir("monitor-corrupt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("9 1.5\n19 x\n".utf8).write(to: URL(fileURLWithPath: dir + "/v.series.txt"))
        let error = #expect(throws: KilnError.self) {
            _ = try MonitorSeries("v", monitor: try Monitor(dir, resumingAt: 30), interval: 10, verbose: false)
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("v.series.txt:2: 'x' is not a number"))
    }

    /// A symlink planted at a monitor file's name in a shared directory is replaced, and the file it points to
    /// keeps its contents.
    @Test func aPlantedSymlinkIsNotFollowed() throws {
        let dir = try trainingTempDir("monitor-symlink"), outside = try trainingTempDir("monitor-victim")
        defer { for d in [dir, outside] { try? FileManager.default.removeItem(atPath: d) } }
        let victim = outside + "/victim.txt"
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: victim))
        try FileManager.default.createSymbolicLink(atPath: dir + "/v.series.txt", withDestinationPath: victim)
        let s = try MonitorSeries("v", monitor: try Monitor(dir), interval: 1, verbose: false)
        s.add(0, 2.0)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/v.series.txt")
        #expect(attributes[.type] as? FileAttributeType == .typeRegular)
        #expect(try textLines(dir + "/v.series.txt") == ["0 2"])
    }
}
