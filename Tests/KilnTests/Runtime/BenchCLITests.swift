import Foundation
import Testing
@testable import Kiln

/// `kiln bench` end to end: the DESIGN contract's figures, and `--speedup` (1-thread and N-thread iterations
/// alternating in one process).
struct BenchCLITests {
    static let binary = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("kiln").path

    static func kiln(_ arguments: [String]) throws -> (status: Int32, values: [String: String], stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        var values: [String: String] = [:]
        for line in String(decoding: o, as: UTF8.self).split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            values[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (p.terminationStatus, values, String(decoding: e, as: UTF8.self))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)))
    func speedupAlternatesThreadCountsInOneProcess() throws {
        let r = try Self.kiln(["bench", "mlp", "--mode", "training", "--batch-size", "8", "--iterations", "3",
                               "--threads", "2", "--speedup"])
        #expect(r.status == 0, "\(r.stderr)")
        for key in ["ms_per_iteration", "arena_bytes", "lower_bound_bytes", "naive_bytes", "persistent_bytes"] {
            #expect(r.values[key] != nil, "\(key)")
        }
        // Every benchmark says which of Kiln's kernel paths ran (the same choice as this process makes).
        #expect(r.values["kiln_kernels"] == KernelPaths.tiles)
        let one = try #require(r.values["alternating_ms_1_thread"].flatMap(Double.init))
        let two = try #require(r.values["alternating_ms_2_threads"].flatMap(Double.init))
        let speedup = try #require(r.values["speedup"].flatMap(Double.init))
        #expect(one > 0 && two > 0)
        #expect(abs(speedup - one / two) <= 1e-3 * speedup + 1e-3)

        let refused = try Self.kiln(["bench", "mlp", "--threads", "1", "--speedup"])
        #expect(refused.status == 64 && refused.stderr.contains("--speedup"), "\(refused.stderr)")
    }
}
