import Foundation
import Testing
@testable import Kiln
@testable import KilnTraining

/// Expected lines follow nnabla's monitor.py: a value is buffered; when `index - flush_at >= interval`
/// (flush_at starting at -1) the buffer's mean is written as "{index} {mean:g}" and flush_at = index.
struct MonitorTests {
    @Test func seriesFlushIndicesAndMeans() throws {
        let dir = try trainingTempDir("monitor")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let monitor = try Monitor(dir + "/sub")        // created with its parents
        let s = try MonitorSeries("Training loss", monitor: monitor, interval: 3, verbose: false)
        for i in 0..<10 { s.add(i, Double(i) * 1.5) }
        // Flushes at 2 (2 - (-1) = 3), 5 and 8; index 9 stays buffered.
        #expect(try textLines(dir + "/sub/Training-loss.series.txt") == ["2 1.5", "5 6", "8 10.5"])
        #expect(s.last?.index == 8 && s.last?.value == 10.5)
    }

    @Test func seriesWithSparseIndices() throws {
        let dir = try trainingTempDir("monitor-sparse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try MonitorSeries("v", monitor: try Monitor(dir), interval: 10, verbose: false)
        s.add(0, 1.0)      // 0 - (-1) = 1 < 10
        s.add(10, 2.0)     // 11 >= 10: mean(1, 2)
        s.add(11, 4.0)     // 1 < 10
        s.add(25, Float(8)) // 15 >= 10: mean(4, 8)
        s.add(26, 100.0)
        #expect(try textLines(dir + "/v.series.txt") == ["10 1.5", "25 6"])
    }

    @Test func intervalTenFlushesAtNineNineteen() throws {
        let dir = try trainingTempDir("monitor-ten")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try MonitorSeries("Training error", monitor: try Monitor(dir), interval: 10, verbose: false)
        for i in 0..<35 { s.add(i, Double(i % 10)) }
        #expect(try textLines(dir + "/Training-error.series.txt") == ["9 4.5", "19 4.5", "29 4.5"])
    }

    @Test func gFormatAsPython() {
        // Python's "{:g}".format(v).
        let cases: [(Double, String)] = [(0.5, "0.5"), (1234567, "1.23457e+06"), (0.0001, "0.0001"), (1e-5, "1e-05"),
                                         (100000, "100000"), (1e6, "1e+06"), (2, "2"), (-0.0, "0"), (0.123456789, "0.123457"),
                                         (.infinity, "inf"), (-3.25, "-3.25")]
        for (v, s) in cases { #expect(MonitorSeries.g(v) == s, "\(v)") }
    }

    @Test func filesAreTruncatedWhenMonitorsAreMade() throws {
        let dir = try trainingTempDir("monitor-trunc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFile.write("old line\n", to: dir + "/x.series.txt")
        try AtomicFile.write("old line\n", to: dir + "/t.timer.txt")
        let m = try Monitor(dir)
        _ = try MonitorSeries("x", monitor: m, verbose: false)
        _ = try MonitorTimeElapsed("t", monitor: m, verbose: false)
        #expect(FileManager.default.contents(atPath: dir + "/x.series.txt")?.isEmpty == true)
        #expect(FileManager.default.contents(atPath: dir + "/t.timer.txt")?.isEmpty == true)
    }

    @Test func withoutMonitorNothingIsWritten() throws {
        let s = try MonitorSeries("x", interval: 2, verbose: false)
        s.add(0, 1.0); s.add(1, 3.0)
        #expect(s.last?.index == 1 && s.last?.value == 2)
        #expect(throws: KilnError.self) { _ = try MonitorSeries("x", interval: 0) }
        #expect(throws: KilnError.self) { _ = try MonitorTimeElapsed("x", interval: -1) }
        #expect(throws: KilnError.self) { _ = try Monitor("/proc/kiln-cannot-create") }
    }

    @Test func timeElapsedLines() throws {
        let dir = try trainingTempDir("monitor-time")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = try MonitorTimeElapsed("Training time", monitor: try Monitor(dir), interval: 2, verbose: false)
        for i in [0, 1, 2, 3, 4, 7, 8] {
            t.add(i)
            usleep(2000)
        }
        // Flushes at 1 (1 - (-1) = 2, 2 iterations), 3 (2 iterations) and 7 (4 iterations); 8 - 7 = 1 < 2.
        let lines = try textLines(dir + "/Training-time.timer.txt")
        #expect(lines.count == 3)
        var previousTotal = 0.0, sum = 0.0
        for (line, (index, iterations)) in zip(lines, [(1, 2), (3, 2), (7, 4)]) {
            let f = line.split(separator: " ").map(String.init)
            #expect(f.count == 4, "\(line)")
            guard f.count == 4, let elapsed = Double(f[1]), let total = Double(f[3]) else { continue }
            #expect(Int(f[0]) == index && Int(f[2]) == iterations, "\(line)")
            // At least the sleeps in between (2 ms per add since the last flush).
            #expect(elapsed >= 0.002 * Double(index == 1 ? 1 : iterations == 2 ? 2 : 2))
            sum += elapsed
            #expect(total >= previousTotal)
            #expect(abs(total - sum) < 1e-3, "total \(total) is the sum of the laps \(sum)")
            previousTotal = total
        }
    }
}
