import Foundation
import Testing

/// The layering of Kiln's targets, read from the sources themselves rather than from Package.swift: every
/// file under `Sources/<Target>/` imports only targets of lower layers. SwiftPM already refuses an import that
/// Package.swift does not declare; this test states the rule, and fails if Package.swift is loosened to let a
/// lower layer depend on a higher one (or two layers of the same rank on each other).
///
/// KilnCore < KilnKernels < KilnGraph < KilnCompiler < KilnRuntime < {KilnTraining, KilnConverters}
/// < {Kiln, KilnMPI} < KilnGraphviz < KilnCLI (the command draws pictures with KilnGraphviz and trains across
/// processes with KilnMPI)
struct LayeringTests {
    /// The rank of each target; a file may import a target only when its rank is lower than its own.
    static let ranks: [String: Int] = [
        "KilnCore": 0,
        "KilnKernels": 1,
        "KilnGraph": 2,
        "KilnCompiler": 3,
        "KilnRuntime": 4,
        "KilnTraining": 5, "KilnConverters": 5, "KilnInterop": 5,
        "Kiln": 6, "KilnMPI": 6,
        "KilnGraphviz": 7, "KilnPlot": 7,
        "KilnCLI": 8,
    ]

    /// The package's Sources folder, found from this file: Tests/KilnTests/Architecture/LayeringTests.swift.
    static let sources: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources")

    /// The Swift targets under Sources (the C system-library folders hold no Swift).
    static func swiftTargets() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: sources.path)
            .filter { !swiftFiles(in: $0).isEmpty }
            .sorted()
    }

    /// Paths, relative to `Sources/<target>/`, of the target's Swift files.
    static func swiftFiles(in target: String) -> [String] {
        let dir = sources.appendingPathComponent(target)
        guard let e = FileManager.default.enumerator(atPath: dir.path) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.sorted()
    }

    /// The modules a file imports (`import X`, `@testable import X`, `@_exported import X`, `import struct X.Y`).
    static func imports(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).compactMap { line -> String? in
            var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            while let w = words.first, w.hasPrefix("@") { words.removeFirst() }
            guard words.first == "import", words.count >= 2 else { return nil }
            let kinds: Set<String> = ["typealias", "struct", "class", "enum", "protocol", "let", "var", "func"]
            let path = kinds.contains(words[1]) && words.count >= 3 ? words[2] : words[1]
            return String(path.split(separator: ".").first ?? "")
        }
    }

    @Test func everyTargetHasALayer() throws {
        let targets = try Self.swiftTargets()
        #expect(targets.count >= Self.ranks.count, "Sources not found at \(Self.sources.path)")
        for t in targets {
            #expect(Self.ranks[t] != nil, "Sources/\(t) is a target without a layer: give it a rank in LayeringTests")
        }
    }

    @Test func importsPointOnlyDownward() throws {
        var checked = 0
        for target in try Self.swiftTargets() {
            guard let rank = Self.ranks[target] else { continue }
            for file in Self.swiftFiles(in: target) {
                let text = try String(contentsOf: Self.sources.appendingPathComponent(target).appendingPathComponent(file),
                                      encoding: .utf8)
                for module in Self.imports(text) {
                    guard let other = Self.ranks[module] else { continue }   // Foundation, CBLAS, ...
                    #expect(other < rank,
                            "Sources/\(target)/\(file) imports \(module), which is not below \(target)")
                }
                checked += 1
            }
        }
        #expect(checked > 100, "only \(checked) source files were read")
    }

    /// `import Kiln` gives the whole API: Kiln re-exports every library layer below it.
    @Test func kilnReexportsEveryLayer() throws {
        let text = try String(contentsOf: Self.sources.appendingPathComponent("Kiln/Exports.swift"), encoding: .utf8)
        let exported = Set(text.split(separator: "\n").compactMap { line -> String? in
            let w = line.split(separator: " ")
            return w.count == 3 && w[0] == "@_exported" && w[1] == "import" ? String(w[2]) : nil
        })
        let layers = Set(Self.ranks.filter { $0.value < Self.ranks["Kiln"]! }.keys)
        #expect(exported == layers)
    }

    /// The parser above, on the forms it must read.
    @Test func importLinesAreRead() {
        let text = """
            import Foundation
            @testable import KilnGraph
            @_exported import KilnCore
              import struct KilnKernels.ConvGeometry
            // import KilnRuntime
            let importance = 1
            """
        #expect(Self.imports(text) == ["Foundation", "KilnGraph", "KilnCore", "KilnKernels"])
    }
}
