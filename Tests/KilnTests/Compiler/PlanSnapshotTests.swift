import Foundation
import Testing
@testable import Kiln

/// The zoo's plans compared byte for byte with the golden dumps in Plans/ (regenerate them with
/// `make plans` after an intended compiler change and review the diff).
struct PlanSnapshotTests {
    static var plansDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Plans")
    }

    static var entries: [(model: Zoo, batch: Int, mode: PlanMode)] {
        guard let text = try? String(contentsOf: plansDirectory.appendingPathComponent("models.txt"), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").flatMap { line -> [(Zoo, Int, PlanMode)] in
            let parts = line.split(separator: " ")
            guard parts.count == 2, let z = Zoo(rawValue: String(parts[0])), let b = Int(parts[1]) else { return [] }
            return PlanMode.allCases.map { (z, b, $0) }
        }
    }

    /// Mixed-precision training plans listed in Plans/half-models.txt.
    static var halfEntries: [String] {
        guard let text = try? String(contentsOf: plansDirectory.appendingPathComponent("half-models.txt"), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    @Test func everyZooModelHasGoldenPlans() {
        #expect(Self.entries.count == 2 * Zoo.allCases.count)
    }

    @Test(arguments: entries.map { "\($0.model.rawValue) \($0.batch) \($0.mode.rawValue)" }
                     + halfEntries.map { "\($0) training half" })
    func planMatchesGoldenDump(_ entry: String) throws {
        let parts = entry.split(separator: " ").map(String.init)
        let model = try #require(Zoo(rawValue: parts[0])), batch = try #require(Int(parts[1]))
        let mode = try #require(PlanMode(rawValue: parts[2]))
        let half = parts.count > 3 && parts[3] == "half"
        let plan = try Parameters.isolated {
            let m = try model.build(batchSize: batch, training: mode == .training)
            return try Compiler.plan([m.root], mode, options: CompileOptions(precision: half ? .half : .float))
        }
        try plan.verify()
        let name = half ? "\(parts[0])-\(parts[2])-half-b\(batch).txt" : "\(parts[0])-\(parts[2])-b\(batch).txt"
        let file = Self.plansDirectory.appendingPathComponent(name)
        let golden = try String(contentsOf: file, encoding: .utf8)
        let fresh = plan.dump()
        if fresh != golden {
            let a = fresh.split(separator: "\n", omittingEmptySubsequences: false)
            let b = golden.split(separator: "\n", omittingEmptySubsequences: false)
            let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
            Issue.record("\(file.lastPathComponent) differs at line \(i + 1): got '\(i < a.count ? a[i] : "<end>")', golden '\(i < b.count ? b[i] : "<end>")'")
        }
    }
}
