import Foundation
import Testing
@testable import Kiln
@testable import KilnGraphviz

/// The drawing `kiln view` makes: scopes as clusters, labels that do not repeat them, text readable on its
/// fill (WCAG 2 contrast), and a compact mode in which ResNet-20 fits 2000 x 2000 pixels.
struct ScopedDrawingTests {
    static func resnet20() throws -> Variable {
        try Parameters.isolated { try Zoo.resnet20.build(batchSize: 4, training: false).root }
    }

    static func viewer(compact: Bool = false, leftToRight: Bool = false, format: String = "png") -> SimpleGraph {
        var v = SimpleGraph(format: format)
        v.scoped = true
        v.compact = compact
        v.leftToRight = leftToRight
        return v
    }

    /// Width and height of a PNG, from its IHDR chunk.
    static func pngSize(_ b: [UInt8]) -> (Int, Int)? {
        guard Fixture.isPNG(b), b.count >= 24 else { return nil }
        func be(_ i: Int) -> Int { Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3]) }
        return (be(16), be(20))
    }

    @Test func resnet20FitsTheScreenInCompactMode() throws {
        let y = try Self.resnet20()
        let g = try Self.viewer(compact: true).createGraphvizDigraph(y)
        let size = try #require(Self.pngSize(try g.renderData()))
        #expect(size.0 <= 2000 && size.1 <= 2000, "\(size)")
        // Without compact mode it does not: the count of drawn functions is what compact mode saves.
        let full = try #require(Self.pngSize(try Self.viewer().createGraphvizDigraph(y).renderData()))
        #expect(full.0 * full.1 > 2 * size.0 * size.1)
        let source = g.source
        // Stage 1's three identical blocks are drawn once, stages 2 and 3 draw block 0 and blocks 1 and 2 once.
        #expect(source.contains("0...2  (x3, drawn once)"))
        #expect(source.components(separatedBy: "1...2  (x2, drawn once)").count == 3)
        // Each convolution's line lists its weight ("Convolution [W]"); tooltips name functions without it.
        let convolutions = source.components(separatedBy: "Convolution [W]").count - 1
        #expect(convolutions == 1 + 2 + (2 + 1 + 2) * 2, "stem, stage 1 once, each later stage's block 0 with its shortcut and blocks 1-2 once")
    }

    @Test func scopesAreClustersAndLabelsDoNotRepeatThem() throws {
        let y = try Self.resnet20()
        let source = try Self.viewer(format: "dot").createGraphvizDigraph(y).source
        for scope in ["stem", "stage1", "stage1/0", "stage2/1/conv1/conv", "fc"] {
            #expect(source.contains("subgraph \"cluster_\(scope)\"") || source.contains("subgraph cluster_\(scope) "), "\(scope)")
        }
        let labels = Fixture.dotStatements(source).compactMap { $0.attributes["label"] }
        #expect(!labels.isEmpty)
        // Outside compact mode every node says what it is and nothing of its scope.
        let nodeLabels = Fixture.dotStatements(source).filter { !$0.head.contains("->") && !["node", "edge", "graph"].contains($0.head) }
            .compactMap { $0.attributes["label"] }
        for l in nodeLabels { #expect(!l.contains("/"), "label \(l) repeats a scope") }
        // nnabla's drawing, by contrast, names the scope in each function's label.
        let nnabla = try SimpleGraph(format: "dot").createGraphvizDigraph(y).source
        #expect(nnabla.contains("stage1/0/conv1/conv"))
    }

    @Test func textIsReadableOnEveryFill() throws {
        let y = try Self.resnet20()
        for viewer in [Self.viewer(format: "dot"), Self.viewer(compact: true, format: "dot"), SimpleGraph(format: "dot")] {
            for (head, a) in Fixture.dotStatements(try viewer.createGraphvizDigraph(y).source) {
                guard let fill = a["fillcolor"] else { continue }
                let text = a["fontcolor"] ?? "black"
                let ratio = try #require(SimpleGraph.contrast(fill, text), "unknown colour \(fill) or \(text)")
                #expect(ratio >= 4.5, "\(head): \(text) on \(fill) has contrast \(ratio)")
            }
        }
        // The complaint that started this: ReLU's green fill takes black text (white had 1.4:1).
        #expect(SimpleGraph.fontColor(for: "green") == "black")
        #expect(SimpleGraph.fontColor(for: "blue") == "white")
        #expect(abs((SimpleGraph.contrast("white", "black") ?? 0) - 21) < 1e-9)
    }

    @Test func leftToRightTurnsTheLayout() throws {
        let y = try Self.resnet20()
        let g = try Self.viewer(compact: true, leftToRight: true).createGraphvizDigraph(y)
        #expect(g.source.contains("rankdir=LR"))
        let size = try #require(Self.pngSize(try g.renderData()))
        #expect(size.0 > size.1)
    }
}
