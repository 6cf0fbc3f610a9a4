import Foundation
import Kiln
import Testing
@testable import KilnGraphviz

extension ViewerTests {
@Suite struct SimpleGraphTests {
    @Test func rendersEveryFormatWithValidSignatures() throws {
        let (y, _) = try Fixture.residualLike()
        let g = try SimpleGraph().createGraphvizDigraph(y)
        let png = Fixture.tempPath("graph.png"), svg = Fixture.tempPath("graph.svg")
        let pdf = Fixture.tempPath("graph.pdf"), dot = Fixture.tempPath("graph.dot")
        try g.render(to: png)
        try g.render(to: svg, format: "svg")
        try g.render(to: pdf, format: "pdf")
        try g.render(to: dot, format: "dot")
        #expect(Fixture.isPNG(Fixture.bytes(png)))
        #expect(Fixture.isPDF(Fixture.bytes(pdf)))
        let titles = try #require(Fixture.svgNodeTitles(Fixture.bytes(svg)))
        #expect(titles.count == g.nodeCount)
        let dotText = String(decoding: Fixture.bytes(dot), as: UTF8.self)
        #expect(dotText.hasPrefix("digraph"))
        // Rendering in memory gives the same kinds of bytes.
        #expect(Fixture.isPNG(try g.renderData(format: "png")))
        #expect(Fixture.isPDF(try g.renderData(format: "pdf")))
        #expect(Fixture.svgElements(try g.renderData(format: "svg")) != nil)
    }

    @Test func everyFunctionAndVariableIsANode() throws {
        let (y, types) = try Fixture.residualLike()
        let nodes = SimpleGraph.functionNodes(from: [y])
        #expect(nodes.map(\.typeName) == types)
        let g = try SimpleGraph(format: "svg").createGraphvizDigraph(y)
        let dot = try g.dotSource
        // Layout was done: the DOT output carries positions.
        #expect(dot.contains("pos="))
        let source = g.source
        for n in nodes {
            #expect(source.contains("\tf\(n.sequence)\t["), "function node f\(n.sequence) (\(n.typeName)) missing")
            #expect(dot.contains("f\(n.sequence)"))
        }
        // Values: 1 input + 5 parameters + one per function output; edges: one per input and per output.
        let values = 1 + 5 + nodes.reduce(0) { $0 + $1.outputTypes.count }
        #expect(g.nodeCount == nodes.count + values)
        #expect(g.edgeCount == nodes.reduce(0) { $0 + $1.inputs.count + $1.outputTypes.count })
        // Function labels name their types; conv is blue, relu green, affine red (nnabla's colours).
        let svgTitles = try #require(Fixture.svgNodeTitles(try g.renderData()))
        for n in nodes { #expect(svgTitles.contains("f\(n.sequence)")) }
        #expect(source.contains("label=Convolution") || source.contains("label=\"Convolution"))
        let conv = try #require(nodes.first { $0.typeName == "Convolution" })
        #expect(attributes(of: "f\(conv.sequence)", in: source).contains("fillcolor=blue"))
        let relu = try #require(nodes.first { $0.typeName == "ReLU" })
        #expect(attributes(of: "f\(relu.sequence)", in: source).contains("fillcolor=green"))
    }

    /// Above `largeGraphFunctions` values become edges and parameters join their function's label.
    @Test func largeGraphsAreDrawnCompactly() throws {
        let (y, _) = try Fixture.residualLike()
        let nodes = SimpleGraph.functionNodes(from: [y])
        var viewer = SimpleGraph(format: "svg", verbose: true)
        viewer.largeGraphFunctions = 2
        let g = try viewer.createGraphvizDigraph(y)
        #expect(g.engine == "nop2")                        // laid out by Kiln, pinned in Graphviz
        // Functions, the one input and the output; no parameter or intermediate value nodes.
        #expect(g.nodeCount == nodes.count + 2)
        let source = g.source
        for n in nodes { #expect(source.contains("\tf\(n.sequence)\t[")) }
        // Edges: each non-parameter input (the image and 7 intermediate values) plus the output's.
        #expect(g.edgeCount == 1 + 7 + 1)
        #expect(source.contains("W, b"))              // conv1's and fc's parameters listed in their boxes
        #expect(source.contains("2x4x8x8") || source.contains("2, 4, 8, 8") || source.contains("(2, 4, 8, 8)"))
        #expect(Fixture.svgElements(try g.renderData()) != nil)
    }

    @Test func verboseShowsShapesArgumentsAndNeedGrad() throws {
        let (y, _) = try Fixture.residualLike()
        let plain = try SimpleGraph(format: "dot").createGraphvizDigraph(y).source
        let verbose = try SimpleGraph(format: "dot", verbose: true).createGraphvizDigraph(y).source
        #expect(verbose.contains("(2, 3, 8, 8)"))          // the input's shape
        #expect(verbose.contains("(2, 10)"))               // the output's shape
        #expect(verbose.contains("(128, 10)"))             // the affine weight
        #expect(verbose.contains("need_grad=true"))
        #expect(verbose.contains("need_grad=false"))
        #expect(verbose.contains("pad=[1,1]"))             // convolution arguments
        #expect(verbose.contains("kernel=[2,2]"))          // max pooling arguments
        #expect(!plain.contains("(2, 3, 8, 8)"))
        #expect(!plain.contains("need_grad"))
    }

    @Test func parametersAreDistinctFromActivationsAndInputs() throws {
        let (y, _) = try Fixture.residualLike()
        let source = try SimpleGraph().createGraphvizDigraph(y).source
        let conv = try #require(SimpleGraph.functionNodes(from: [y]).first)
        let w = conv.inputs[1], x = conv.inputs[0]
        let wAttrs = attributes(of: SimpleGraph.variableID(w), in: source)
        let xAttrs = attributes(of: SimpleGraph.variableID(x), in: source)
        let hAttrs = attributes(of: "v\(conv.sequence)_0", in: source)
        #expect(wAttrs.contains("shape=box") && wAttrs.contains("fillcolor=pink"))
        // Ellipse is Graphviz's default shape, which agwrite leaves out.
        #expect(!xAttrs.contains("shape=") && !xAttrs.contains("pink") && xAttrs.contains("fillcolor=lightcyan"))
        #expect(!hAttrs.contains("shape=") && !hAttrs.contains("pink") && hAttrs.contains("fillcolor=lightgray"))
        #expect(wAttrs != xAttrs && xAttrs != hAttrs)
        // nnabla's scope labels: the function shows the parameters' scope, the parameter its short name.
        #expect(wAttrs.contains("label=W"))
        #expect(attributes(of: "f\(conv.sequence)", in: source).contains("conv1/conv"))
    }

    @Test func colorMapsOverrideTheDefaults() throws {
        let (y, _) = try Fixture.residualLike()
        let g = try SimpleGraph(fnameColorMap: ["ReLU": "yellow"], vnameColorMap: ["image": "gold"])
            .createGraphvizDigraph(y)
        let source = g.source
        let nodes = SimpleGraph.functionNodes(from: [y])
        let relu = try #require(nodes.first { $0.typeName == "ReLU" })
        let conv = try #require(nodes.first { $0.typeName == "Convolution" })
        #expect(attributes(of: "f\(relu.sequence)", in: source).contains("fillcolor=yellow"))
        #expect(attributes(of: "f\(conv.sequence)", in: source).contains("fillcolor=lightgray"))
        #expect(attributes(of: SimpleGraph.variableID(conv.inputs[0]), in: source).contains("fillcolor=gold"))
    }

    @Test func unsupportedFormatsListTheSupportedOnes() throws {
        let (y, _) = try Fixture.residualLike()
        do {
            _ = try SimpleGraph(format: "bmp").createGraphvizDigraph(y)
            Issue.record("bmp was accepted")
        } catch let e as GraphvizError {
            let text = "\(e)"
            for f in ["bmp", "png", "svg", "pdf", "dot"] { #expect(text.contains(f)) }
        }
        let g = try SimpleGraph().createGraphvizDigraph(y)
        #expect(throws: GraphvizError.self) { try g.render(to: Fixture.tempPath("x.gif"), format: "gif") }
        #expect(throws: GraphvizError.self) { try g.renderData(format: "exe") }
        #expect(throws: GraphvizError.self) { try PlanPicture.render(try Compiler.plan([y]), to: Fixture.tempPath("p.tiff")) }
        #expect(throws: GraphvizError.self) { try g.render(to: "/nonexistent-dir/x.png") }
    }

    @Test func saveWritesPictureAndSourceLikeNnabla() throws {
        let (y, _) = try Fixture.residualLike()
        let base = Fixture.tempPath("saved_graph")
        let picture = try SimpleGraph().save(y, path: base)
        #expect(picture == base + ".png")
        #expect(Fixture.isPNG(Fixture.bytes(picture)))
        let source = String(decoding: Fixture.bytes(base), as: UTF8.self)
        #expect(source.hasPrefix("digraph"))
        #expect(!source.contains("pos="))                  // the source is the graph as built, before layout

        let svgPath = Fixture.tempPath("cleaned.svg")
        try? FileManager.default.removeItem(atPath: Fixture.tempPath("cleaned.gv"))
        #expect(try SimpleGraph().save(y, path: svgPath, cleanup: true, format: "svg") == svgPath)
        #expect(Fixture.svgElements(Fixture.bytes(svgPath)) != nil)
        #expect(!FileManager.default.fileExists(atPath: Fixture.tempPath("cleaned.gv")))
    }

    static var noDisplay: Bool {
        let env = ProcessInfo.processInfo.environment
        return (env["DISPLAY"] ?? "").isEmpty && (env["WAYLAND_DISPLAY"] ?? "").isEmpty
    }

    @Test(.enabled(if: noDisplay, "a display is set: view would open a window instead of reporting the path"))
    func viewWithoutDisplayRendersAndReportsThePath() throws {
        let (y, _) = try Fixture.residualLike()
        let path = try SimpleGraph(format: "svg").view(y, path: Fixture.tempPath("viewed"))
        #expect(path.hasSuffix("viewed.svg"))
        #expect(Fixture.svgElements(Fixture.bytes(path)) != nil)
        #expect(!FileManager.default.fileExists(atPath: Fixture.tempPath("viewed")))   // cleanup: true
    }

    @Test func droppedOutputsAndLoneLeavesAreDrawn() throws {
        let x = try Variable(shape: [2, 3], name: "x")
        let kept: Variable = try { let parts = try F.split(x, axis: 1); return try F.relu(parts[0]) }()
        // Split's outputs 1 and 2 are gone (outputs are weak), yet drawn from the node's output types.
        #expect(try SimpleGraph().createGraphvizDigraph(kept).nodeCount == 7)
        let lone = try SimpleGraph().createGraphvizDigraph(x)
        #expect(lone.nodeCount == 1)
        let chain = try F.relu(try F.relu(x))
        // The middle relu's output is held only by the second relu (through inputs): still drawn.
        #expect(try SimpleGraph().createGraphvizDigraph(chain).nodeCount == 5)
    }

    @Test func deepChainsDoNotExhaustTheStack() throws {
        var h = try Variable(shape: [1, 4], name: "x")
        for _ in 0..<20_000 { h = try F.relu(h) }
        #expect(SimpleGraph.functionNodes(from: [h]).count == 20_000)
        // A few hundred functions lay out and render.
        var k = try Variable(shape: [1, 4], name: "x")
        for i in 0..<300 { k = i % 2 == 0 ? try F.relu(k) : try F.reshape(k, shape: i % 4 == 1 ? [4, 1] : [1, 4]) }
        let g = try SimpleGraph(format: "svg").createGraphvizDigraph(k)
        #expect(try Fixture.svgNodeTitles(g.renderData())?.count == 601)
        #expect(g.engine == "dot" && !g.source.contains("pos="))
        // Past the large-graph threshold Kiln lays the graph out and values become edges: the 300
        // functions, the input and the output remain as nodes, each at a position.
        var quick = SimpleGraph(format: "svg")
        quick.largeGraphFunctions = 100
        let big = try quick.createGraphvizDigraph(k)
        #expect(big.engine == "nop2")
        #expect(try Fixture.svgNodeTitles(big.renderData())?.count == 302)
        #expect(Fixture.laidOutNodes(try big.dotSource).count == 302)
        // The 20,000-function chain draws too (one column, 20,000 rows).
        let huge = try SimpleGraph(format: "svg").createGraphvizDigraph(h)
        #expect(huge.nodeCount == 20_002)
        // (16 MB of SVG: more than Foundation's XML parser accepts, so the node groups are counted.)
        let svg = String(decoding: try huge.renderData(), as: UTF8.self)
        #expect(svg.components(separatedBy: "<g id=\"node").count - 1 == 20_002)
        #expect(svg.hasSuffix("</svg>\n"))
    }

    @Test func bitmapsAreScaledDownToThePixelCapAndVectorsAreNot() throws {
        let (y, _) = try Fixture.residualLike()
        let g = try SimpleGraph(format: "png").createGraphvizDigraph(y)
        let full = try #require(Fixture.pngSize(try g.renderData()))
        let svgBefore = try #require(Fixture.svgElements(try g.renderData(format: "svg"))?.first { $0.name == "svg" })
        g.maxBitmapPixels = full.width * full.height / 4
        let path = Fixture.tempPath("capped.png")
        try g.render(to: path)
        for png in [try g.renderData(), Fixture.bytes(path)] {
            let capped = try #require(Fixture.pngSize(png))
            let area = Double(capped.width * capped.height), cap = Double(g.maxBitmapPixels)
            // Scaled as a whole (same aspect, close to the cap), not cropped.
            #expect(area <= cap * 1.01 && area >= cap * 0.9, "\(capped) for a cap of \(cap)")
            #expect(abs(Double(capped.width) / Double(capped.height) - Double(full.width) / Double(full.height)) < 0.05)
        }
        // The SVG keeps its size, and the viewport is gone from the graph after rendering.
        let svgAfter = try #require(Fixture.svgElements(try g.renderData(format: "svg"))?.first { $0.name == "svg" })
        #expect(svgAfter.attributes["width"] == svgBefore.attributes["width"])
        #expect(svgAfter.attributes["height"] == svgBefore.attributes["height"])
        #expect(!g.source.contains("viewport"))
        #expect(Fixture.pngSize(try SimpleGraph(format: "png").createGraphvizDigraph(y).renderData()).map { $0 == full } == true)
    }

    @Test func graphsRenderInAnyOrder() throws {
        // libgvc's attribute globals follow the last layout: rendering A after B was laid out must re-layout A.
        let (y, _) = try Fixture.residualLike()
        let a = try SimpleGraph(format: "svg").createGraphvizDigraph(y)
        let b = try PlanPicture.digraph(try Compiler.plan([y], .training))
        for _ in 0..<3 {
            #expect(Fixture.svgNodeTitles(try a.renderData())?.count == a.nodeCount)
            #expect(Fixture.svgNodeTitles(try b.renderData(format: "svg"))?.count == b.nodeCount)
            #expect(Fixture.isPNG(try a.renderData(format: "png")))
        }
    }

    @Test func labelsCannotInjectGraphvizEscapes() throws {
        let x = try Variable(shape: [1, 2], name: "a\\Nb\"c")
        let g = try SimpleGraph(format: "svg").createGraphvizDigraph(try F.relu(x))
        let els = try #require(Fixture.svgElements(try g.renderData()))
        let texts = els.filter { $0.name == "text" }.map(\.text)
        #expect(texts.contains("a\\Nb\"c"))
    }
}

/// The nnabla example network (PF with the global parameter registry): serialised, as it changes global state.
@Suite(.serialized) struct SimpleGraphParametricTests {
    @Test func nnablaExampleNetwork() throws {
        try Parameters.scope("kgv_example") {
            let image = try Variable(shape: [4, 3, 32, 32])
            var h = try PF.convolution(image, outMaps: 16, kernel: [3, 3], pad: [1, 1], name: "conv")
            h = try PF.batchNormalization(h, batchStat: true, name: "bn")
            h = try F.relu(h)
            let pred = try PF.affine(h, outMaps: 10, name: "fc")
            let g = try SimpleGraph(verbose: false).createGraphvizDigraph(pred)
            let source = g.source
            let nodes = SimpleGraph.functionNodes(from: [pred])
            #expect(nodes.map(\.typeName) == ["Convolution", "BatchNormalization", "ReLU", "Affine"])
            let bn = nodes[1]
            #expect(attributes(of: "f\(bn.sequence)", in: source).contains("kgv_example/bn/bn"))
            #expect(attributes(of: "f\(bn.sequence)", in: source).contains("fillcolor=orange"))
            // beta/gamma need a gradient (solid), mean/var do not (dashed) - all are parameters (pink boxes).
            for (i, v) in bn.inputs.enumerated().dropFirst() {
                let a = attributes(of: SimpleGraph.variableID(v), in: source)
                #expect(a.contains("fillcolor=pink"), "bn input \(i)")
                #expect(a.contains("dashed") == !v.needGrad, "bn input \(i)")
            }
            let png = Fixture.tempPath("nnabla_example")
            #expect(Fixture.isPNG(Fixture.bytes(try SimpleGraph().save(pred, path: png))))
        }
    }
}
}
