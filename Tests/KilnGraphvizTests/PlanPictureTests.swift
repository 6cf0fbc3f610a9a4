import Foundation
import Kiln
import Testing
@testable import KilnGraphviz

extension ViewerTests {
@Suite struct PlanPictureTests {
    @Test(arguments: [PlanMode.inference, .training])
    func oneBoxPerTransientBuffer(mode: PlanMode) throws {
        let (y, _) = try Fixture.residualLike()
        let plan = try Compiler.plan([y], mode)
        let lifetimes = Liveness.lifetimes(plan)
        #expect(!lifetimes.isEmpty)
        let path = Fixture.tempPath("plan-\(mode.rawValue).svg")
        try PlanPicture.render(plan, to: path)
        let bytes = Fixture.bytes(path)
        let titles = try #require(Fixture.svgNodeTitles(bytes))
        let boxes = titles.filter { $0.hasPrefix("buf") }
        #expect(boxes.count == lifetimes.count)
        #expect(Set(boxes) == Set(lifetimes.map { "buf\($0.buffer)" }))
        // Every kind present in the plan is in the legend; the peak and the lower bound are labelled.
        let texts = try #require(Fixture.svgElements(bytes)).filter { $0.name == "text" }.map(\.text)
        #expect(texts.contains("arena_bytes \(formatBytes(plan.arenaBytes))"))
        #expect(texts.contains("lower bound \(formatBytes(plan.lowerBoundBytes))"))
        for kind in Set(lifetimes.map { plan.buffers[$0.buffer].kind }) {
            let n = lifetimes.filter { plan.buffers[$0.buffer].kind == kind }.count
            #expect(texts.contains("\(kind.rawValue) (\(n))"))
        }
        #expect(titles.contains("arena_line") && titles.contains("bound_line"))
        if mode == .training {
            #expect(lifetimes.contains { plan.buffers[$0.buffer].kind == .gradient })
            #expect(titles.contains("phase_line"))
        }
    }

    /// Exactly one buffer of `plan` is `shown`, drawn in `color` with `tooltip` in its tooltip, and the legend has it.
    func expectShownApart(_ plan: Plan, _ shown: [PlanBuffer], color: String, tooltip: String, legend: String) throws {
        #expect(shown.count == 1)
        let dot = try PlanPicture.digraph(plan, format: "dot").dotSource
        for b in shown {
            let a = attributes(of: "buf\(b.id)", in: dot)
            #expect(a.contains("fillcolor=\"\(color)\"") && a.contains(tooltip), "\(a)")
        }
        #expect(dot.contains(legend))
    }

    /// A quantized plan's 8-bit code buffers have their own colour, legend entry and tooltip.
    @Test func codeBuffersAreShownApart() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [2, 3, 8, 8])
            try x.setData((0..<x.size).map { Float($0 % 7) / 4 })
            let w = try Variable(shape: [4, 3, 3, 3], needGrad: true)
            try w.setData((0..<w.size).map { Float($0 % 5) / 8 - 0.25 })
            let xq = try F.fixedPointQuantize(x, sign: false, n: 8, delta: 1.0 / 32)
            let y = try F.convolution(xq, F.fixedPointQuantize(w, sign: true, n: 8, delta: 1.0 / 64), nil)
            let plan = try Compiler.plan([y], .inference)
            try expectShownApart(plan, plan.buffers.filter { $0.codes != nil && $0.offset != nil },
                                 color: PlanPicture.codesColor, tooltip: "as u8*2^-5", legend: "legend_codes")
            #expect(plan.dump().contains("8 live 8-bit codes"))
        }
    }

    /// Values stored in padded planes (`CompileOptions.layouts`) have their own colour, legend entry and tooltip.
    @Test func paddedPlanesAreShownApart() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [2, 3, 8, 16])
            try x.setData((0..<x.size).map { Float($0 % 7) / 4 })
            let w1 = try Variable(shape: [4, 3, 3, 3]), w2 = try Variable(shape: [4, 4, 3, 3])
            try w1.setData((0..<w1.size).map { Float($0 % 5) / 8 - 0.25 })
            try w2.setData((0..<w2.size).map { Float($0 % 3) / 8 - 0.125 })
            let h = try F.relu(F.convolution(x, w1, nil, pad: [1, 1]))
            let y = try F.mulScalar(F.relu(F.convolution(h, w2, nil, pad: [1, 1])), val: 2)
            var options = CompileOptions()
            options.layouts = true
            let plan = try Compiler.plan([y], .inference, options: options)
            try expectShownApart(plan, plan.buffers.filter { $0.layout != nil }, color: PlanPicture.paddedColor,
                                 tooltip: "in planes padded 1x1", legend: "legend_padded")
            #expect(!(try PlanPicture.digraph(Compiler.plan([y], .inference), format: "dot").dotSource.contains("legend_padded")))
        }
    }

    @Test func boxesSitAtTheirOffsetsAndLifetimes() throws {
        let (y, _) = try Fixture.residualLike()
        let plan = try Compiler.plan([y], .training)
        let g = try PlanPicture.digraph(plan, format: "dot")
        let dot = try g.dotSource
        // Boxes fill the frame's height exactly at the peak: the widest-offset box ends at the arena line.
        for l in Liveness.lifetimes(plan) {
            let b = plan.buffers[l.buffer]
            let a = attributes(of: "buf\(b.id)", in: dot)
            #expect(a.contains("fillcolor=\"\(PlanPicture.colors[b.kind] ?? "")\""), "buffer \(b.id) \(b.kind)")
        }
        // Positions are kept exactly as given (nop layout), in points.
        let steps = Double(plan.steps.count), stepW = PlanPicture.plotWidth(steps: plan.steps.count) / steps
        let plot = PlanPicture.plotHeight(width: PlanPicture.plotWidth(steps: plan.steps.count))
        let l = try #require(Liveness.lifetimes(plan).first)
        let off = try #require(plan.buffers[l.buffer].offset)
        let scale = plot / Double(max(plan.arenaBytes, 1))
        let cx = PlanPicture.left + (Double(l.first) + Double(l.last + 1)) / 2 * stepW
        let cy = plot + 60 - (Double(off) + Double(l.bytes) / 2) * scale
        let a = attributes(of: "buf\(l.buffer)", in: dot)
        let posText = try #require(a.range(of: "pos=\"")).upperBound
        let coords = a[posText...].prefix { $0 != "\"" }.split(separator: ",").compactMap { Double($0.filter { $0 != "!" }) }
        #expect(coords.count == 2)
        // Graphviz translates the drawing so that its bounding box starts at the origin; compare relative to
        // the frame node, whose position is also known.
        let f = attributes(of: "frame", in: dot)
        let fpos = try #require(f.range(of: "pos=\"")).upperBound
        let fc = f[fpos...].prefix { $0 != "\"" }.split(separator: ",").compactMap { Double($0.filter { $0 != "!" }) }
        let steps0 = PlanPicture.left + Double(plan.steps.count) * stepW / 2
        #expect(abs((coords[0] - fc[0]) - (cx - steps0)) < 1.5)
        #expect(abs((coords[1] - fc[1]) - (cy - (plot + 60 - plot / 2))) < 1.5)
    }

    @Test func pngAndPdfWork() throws {
        let (y, _) = try Fixture.residualLike()
        let plan = try Compiler.plan([y], .training)
        let png = Fixture.tempPath("plan.png"), pdf = Fixture.tempPath("plan.pdf")
        try PlanPicture.render(plan, to: png)
        try PlanPicture.render(plan, to: pdf)
        #expect(Fixture.isPNG(Fixture.bytes(png)))
        #expect(Fixture.isPDF(Fixture.bytes(pdf)))
    }

    @Test func bigPlansStayLinear() throws {
        // A long chain with many buffers: one node per buffer plus a fixed number of labels.
        var h = try Variable(shape: [8, 64], name: "x")
        let w = try Variable(shape: [64, 64], needGrad: true, name: "w")
        for i in 0..<300 { h = i % 2 == 0 ? try F.affine(h, w) : try F.relu(h) }
        let plan = try Compiler.plan([h], .training)
        let n = Liveness.lifetimes(plan).count
        #expect(n > 500)
        let g = try PlanPicture.digraph(plan)
        #expect(g.nodeCount < n + 60)
        let titles = try #require(Fixture.svgNodeTitles(try g.renderData(format: "svg")))
        #expect(titles.filter { $0.hasPrefix("buf") }.count == n)
    }

    @Test func tickSpacing() {
        #expect(PlanPicture.niceTick(5) == 1)
        #expect(PlanPicture.niceTick(24) == 2)
        #expect(PlanPicture.niceTick(60) == 5)
        #expect(PlanPicture.niceTick(1000) == 100)
        #expect(PlanPicture.niceTick(2300) == 200)
    }
}
}
