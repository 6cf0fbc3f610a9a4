import Foundation
import Kiln
import Testing
@testable import KilnGraphviz

extension ViewerTests {
/// Graphs above `largeGraphFunctions`: laid out by Kiln (`LayeredLayout`), pinned with libgvc's nop2 engine.
@Suite struct LargeGraphTests {
    /// Checks a laid-out compact drawing through Graphviz's own DOT output: every function is a node with a
    /// position, every edge points down, and no two nodes of a row overlap (with the sizes Graphviz drew).
    static func checkDrawing(_ dot: String, functions: [FunctionNode]) throws {
        let nodes = Fixture.laidOutNodes(dot)
        for n in functions { #expect(nodes["f\(n.sequence)"] != nil, "function f\(n.sequence) has no position") }
        let edges = Fixture.laidOutEdges(dot)
        #expect(!edges.isEmpty)
        for e in edges {
            let t = try #require(nodes[e.tail]), h = try #require(nodes[e.head])
            #expect(h.y < t.y, "edge \(e.tail) -> \(e.head) does not point down")
        }
        var rows: [Double: [LaidOutNode]] = [:]
        for n in nodes.values { rows[n.y, default: []].append(n) }
        for (y, row) in rows {
            let sorted = row.sorted { $0.x < $1.x }
            for (a, b) in zip(sorted, sorted.dropFirst()) {
                #expect(b.x - b.width / 2 >= a.x + a.width / 2, "nodes overlap in the row at y=\(y)")
            }
        }
    }

    /// The issue's benchmark graph: 5,000 functions render with every function present, in both formats.
    @Test func fiveThousandFunctionsRender() throws {
        let y = try Fixture.generatedNetwork(functions: 5000)
        let functions = SimpleGraph.functionNodes(from: [y])
        #expect(functions.count == 5000)
        let start = Date()
        let g = try SimpleGraph(format: "svg").createGraphvizDigraph(y)
        #expect(g.engine == "nop2")
        let svg = try g.renderData()
        let elapsed = Date().timeIntervalSince(start)
        let titles = Set(try #require(Fixture.svgNodeTitles(svg)))
        #expect(titles.count == g.nodeCount)
        for n in functions { #expect(titles.contains("f\(n.sequence)")) }
        // The input, the functions and the output; each function's inputs that are not parameters as edges.
        #expect(g.nodeCount == 5002)
        #expect(g.edgeCount == 5000 / 4 * 5 + 1)
        try Self.checkDrawing(try g.dotSource, functions: functions)
        #expect(Fixture.isPNG(try g.renderData(format: "png")))
        // The issue's bound, with room: a debug build on a busy machine takes a few seconds at most.
        #expect(elapsed < 10, "building, laying out and rendering took \(elapsed) s")
    }

    @Test func branchyGraphsKeepRowsApart() throws {
        // Four parallel branches per block, joined by a concatenation: wide rows and long edges.
        var h = try Variable(shape: [1, 4], name: "x")
        for _ in 0..<30 {
            var branches: [Variable] = []
            for b in 0..<4 {
                var v = h
                for _ in 0...b { v = try F.relu(v) }
                branches.append(try F.reshape(v, shape: [1, 4]))
            }
            let joined = try F.reshape(try F.concatenate(branches, axis: 1), shape: [4, 4])
            h = try F.sum(joined, axes: [0], keepDims: true)
        }
        var viewer = SimpleGraph(format: "svg", verbose: true)
        viewer.largeGraphFunctions = 10
        let g = try viewer.createGraphvizDigraph(h)
        let functions = SimpleGraph.functionNodes(from: [h])
        try Self.checkDrawing(try g.dotSource, functions: functions)
        let titles = try #require(Fixture.svgNodeTitles(try g.renderData()))
        #expect(titles.count == g.nodeCount)
        // Verbose: the values' shapes label the edges.
        #expect(g.source.contains("label=\"(1, 4)\""))
    }

    /// Kiln pins nodes at its estimated size; Graphviz's own size for the same label must never be larger.
    @Test func estimatedSizesHoldGraphvizLabels() throws {
        let ascii = String((32...126).map { Character(UnicodeScalar($0)) })
        let labels: [([String], LayeredLayout.Shape)] = [
            ([ascii], .box), ([ascii], .ellipse), (["x"], .ellipse), (["h"], .box),
            (["affine1234a", "(Affine)", "b1234/a", "W, b"], .box),
            (["concat1249", "(Concatenate)"], .box),
            (["MMMMMMMMMMWWWWWWWWWW@@@@@", "mmmmmmmmmmwwwwwwwwww"], .box),
            (["kernel=[3,3]", "pad=[1,1]", "stride=[1,1]", "dilation=[1,1]", "group=1", "channel_last=false"], .box),
            (["image", "(2, 3, 32, 32)", "need_grad=false"], .ellipse),
            (["caf\u{e9} \u{3bb}=0.5", "\u{91cd}\u{307f}"], .box),
        ]
        let g = try Digraph(name: "sizes", format: "dot", engine: "nop2")
        SimpleGraph.setDefaults(g)
        for (i, (lines, shape)) in labels.enumerated() {
            g.node("n\(i)", [("label", labelLines(lines)), ("shape", shape == .box ? "box" : "ellipse"),
                             ("pos", "0,\(i * 300)")])
        }
        let drawn = Fixture.laidOutNodes(try g.dotSource)
        for (i, (lines, shape)) in labels.enumerated() {
            let natural = try #require(drawn["n\(i)"])
            let estimate = LabelSize.node(lines, fontSize: SimpleGraph.fontSize, shape: shape)
            #expect(natural.width <= estimate.width + 0.5, "\(lines): Graphviz width \(natural.width) > \(estimate.width)")
            #expect(natural.height <= estimate.height + 0.5, "\(lines): Graphviz height \(natural.height) > \(estimate.height)")
            // ... and not wastefully larger: within a quarter (ellipses' and wide glyphs' slack included).
            #expect(estimate.width <= natural.width * 1.25 + 2, "\(lines): estimate \(estimate.width) for \(natural.width)")
        }
    }

    @Test func splineRoutesEndAtTheArrowhead() {
        let pos = SimpleGraph.splinePos([.init(x: 0, y: 100), .init(x: 30, y: 50), .init(x: 30, y: 10)])
        // "e,tip" then 3k+1 points: the start, and three per segment; the last stops 7 pt before the tip.
        let parts = pos.split(separator: " ")
        #expect(parts[0] == "e,30,10")
        #expect(parts.count == 1 + 1 + 3 * 2)
        #expect(parts[1] == "0,100")
        #expect(parts[4] == "30,50")
        #expect(parts.last == "30,17")
        #expect(coordinate(1.25) == "1.25" && coordinate(2.004) == "2" && coordinate(-3) == "-3")
        #expect(coordinate(.nan) == "0")
    }
}
}
