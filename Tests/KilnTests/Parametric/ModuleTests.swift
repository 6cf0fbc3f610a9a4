import Testing
@testable import Kiln

/// The parametric function classes (`Module.Affine`, `Module.Convolution`, ...) against the functional `PF`
/// equivalents: same initial values from the same generator state, same outputs and gradients through
/// compiled plans, nnabla's parameter naming, and errors instead of crashes.
///
/// Serialized: the PF half uses the process-wide parameter registry and some cases reseed the global
/// generator.
@Suite(.serialized) struct ModuleTests {
    /// Runs forward, seeds the output gradient with `dy` and runs backward.
    func run(_ y: Variable, dy: [Float]) throws {
        try y.forward()
        try y.setGrad(dy)
        try y.backward(grad: nil)
    }

    func same(_ a: [Float], _ b: [Float], _ what: String, rtol: Float = 1e-5, atol: Float = 1e-6) {
        let m = mismatch(a, b, rtol: rtol, atol: atol)
        #expect(m == nil, "\(what): \(m ?? "")")
    }

    // MARK: - Affine

    @Test func affineMatchesPF() throws {
        let m = try Module.Affine(nInMaps: 12, nOutMaps: 5, rng: NumpyRandom(seed: 7))
        let xa = Harness.random([4, 3, 4], seed: 1)
        let x1 = try Variable(xa, needGrad: true), x2 = try Variable(xa, needGrad: true)
        let y1 = try m(x1)
        let y2 = try PF.affine(x2, outMaps: 5, rng: NumpyRandom(seed: 7), name: "moduletests_affine")
        let w2 = try #require(Parameters.get("moduletests_affine/affine/W"))
        let b2 = try #require(Parameters.get("moduletests_affine/affine/b"))
        // Same generator state, same draws: bit-identical weights.
        #expect(m.W.shape == [12, 5] && w2.shape == [12, 5])
        #expect(m.W.d == w2.d)
        #expect(m.b?.d == [Float](repeating: 0, count: 5))
        // Glorot range for inmaps 12, outmaps 5.
        let lim = Float((6.0 / 17.0).squareRoot())
        #expect(m.W.d.allSatisfy { abs($0) <= lim } && Set(m.W.d).count == 60)
        // A non-zero bias on both sides, so the bias path is compared too.
        let bias = (0..<5).map { Float($0) * 0.25 - 0.5 }
        try m.b?.setData(bias)
        try b2.setData(bias)
        let dy = Harness.random([4, 5], seed: 2).toFloats()
        try run(y1, dy: dy)
        try run(y2, dy: dy)
        #expect(y1.shape == [4, 5])
        same(y1.d, y2.d, "y")
        same(x1.g, x2.g, "dx")
        same(m.W.g, w2.g, "dW")
        same(m.b?.g ?? [], b2.g, "db")
        // Independent reference: y[n, j] = sum_i x[n, i] W[i, j] + b[j].
        let x = xa.toFloats(), w = m.W.d
        var ref = [Float](repeating: 0, count: 20)
        for n in 0..<4 { for j in 0..<5 {
            var s = bias[j]
            for i in 0..<12 { s += x[n * 12 + i] * w[i * 5 + j] }
            ref[n * 5 + j] = s
        } }
        same(y1.d, ref, "y vs naive", rtol: 1e-4, atol: 1e-5)
        // db = sum over the batch of dy.
        let db = (0..<5).map { j in (0..<4).reduce(Float(0)) { $0 + dy[$1 * 5 + j] } }
        same(m.b?.g ?? [], db, "db vs naive")
    }

    /// nnabla's class flattens n_outmaps: W (inmaps, prod(outmaps)); the values are PF's row-major ones.
    @Test func affineWithShapedOutputsFlattensLikeNnabla() throws {
        let m = try Module.Linear(nInMaps: 6, nOutMaps: [2, 3], baseAxis: 2, rng: NumpyRandom(seed: 3), withBias: false)
        #expect(m.W.shape == [6, 6] && m.b == nil)
        let xa = Harness.random([2, 3, 6], seed: 4)
        let x1 = try Variable(xa, needGrad: true), x2 = try Variable(xa, needGrad: true)
        let y1 = try m(x1)
        let y2 = try PF.affine(x2, outMaps: [2, 3], baseAxis: 2, rng: NumpyRandom(seed: 3), withBias: false,
                               name: "moduletests_affine_shaped")
        let w2 = try #require(Parameters.get("moduletests_affine_shaped/affine/W"))
        #expect(w2.shape == [6, 2, 3] && m.W.d == w2.d)
        #expect(y1.shape == [2, 3, 6] && y2.shape == [2, 3, 2, 3])
        let dy = Harness.random([2, 3, 6], seed: 5).toFloats()
        try run(y1, dy: dy)
        try run(y2, dy: dy)
        same(y1.d, y2.d, "y")
        same(x1.g, x2.g, "dx")
        same(m.W.g, w2.g, "dW")
        #expect(m.getParameters().map { $0.name } == ["W"])
    }

    // MARK: - Convolution / Deconvolution

    @Test func convolutionMatchesPF() throws {
        let m = try Module.Conv2d(inMaps: 4, outMaps: 6, kernel: [3, 2], pad: [1, 0], stride: [2, 1],
                                  dilation: [1, 2], group: 2, rng: NumpyRandom(seed: 11))
        let xa = Harness.random([2, 4, 7, 6], seed: 12)
        let x1 = try Variable(xa, needGrad: true), x2 = try Variable(xa, needGrad: true)
        let y1 = try m(x1)
        let y2 = try PF.convolution(x2, outMaps: 6, kernel: [3, 2], pad: [1, 0], stride: [2, 1], dilation: [1, 2],
                                    group: 2, rng: NumpyRandom(seed: 11), name: "moduletests_conv")
        let w2 = try #require(Parameters.get("moduletests_conv/conv/W"))
        let b2 = try #require(Parameters.get("moduletests_conv/conv/b"))
        #expect(m.W.shape == [6, 2, 3, 2] && m.W.shape == w2.shape && m.b?.shape == [6])
        #expect(m.W.d == w2.d)
        // Glorot with inmaps NOT divided by group: sqrt(6 / (6 * (4 + 6))).
        let lim = Float((6.0 / 60.0).squareRoot())
        #expect(m.W.d.allSatisfy { abs($0) <= lim } && m.W.d.contains { abs($0) > lim * 0.8 })
        let bias: [Float] = [0.1, -0.2, 0.3, -0.4, 0.5, -0.6]
        try m.b?.setData(bias)
        try b2.setData(bias)
        #expect(y1.shape == y2.shape && y1.shape == [2, 6, 4, 4])
        let dy = Harness.random(y1.shape, seed: 13).toFloats()
        try run(y1, dy: dy)
        try run(y2, dy: dy)
        same(y1.d, y2.d, "y")
        same(x1.g, x2.g, "dx")
        same(m.W.g, w2.g, "dW")
        same(m.b?.g ?? [], b2.g, "db")
    }

    @Test func convolution1dAnd3dMatchPF() throws {
        for (kernel, xShape) in [([3], [2, 3, 9]), ([2, 2, 3], [1, 3, 4, 5, 6])] {
            let scope = "moduletests_conv_\(kernel.count)d"
            let m = try Module.ConvNd(inMaps: 3, outMaps: 2, kernel: kernel, rng: NumpyRandom(seed: 21), withBias: false)
            let xa = Harness.random(xShape, seed: 22)
            let x1 = try Variable(xa, needGrad: true), x2 = try Variable(xa, needGrad: true)
            let y1 = try m(x1)
            let y2 = try PF.convolution(x2, outMaps: 2, kernel: kernel, rng: NumpyRandom(seed: 21), withBias: false, name: scope)
            let w2 = try #require(Parameters.get(scope + "/conv/W"))
            #expect(m.W.d == w2.d && m.b == nil)
            let dy = Harness.random(y1.shape, seed: 23).toFloats()
            try run(y1, dy: dy)
            try run(y2, dy: dy)
            same(y1.d, y2.d, "y \(kernel)")
            same(x1.g, x2.g, "dx \(kernel)")
            same(m.W.g, w2.g, "dW \(kernel)")
        }
    }

    @Test func deconvolutionMatchesPF() throws {
        let m = try Module.Deconv2d(inMaps: 4, outMaps: 6, kernel: [3, 3], pad: [1, 1], stride: [2, 2], group: 2,
                                    rng: NumpyRandom(seed: 31), outputPadding: [1, 0])
        let xa = Harness.random([2, 4, 3, 4], seed: 32)
        let x1 = try Variable(xa, needGrad: true), x2 = try Variable(xa, needGrad: true)
        let y1 = try m(x1)
        let y2 = try PF.deconvolution(x2, outMaps: 6, kernel: [3, 3], pad: [1, 1], stride: [2, 2], group: 2,
                                      outputPadding: [1, 0], rng: NumpyRandom(seed: 31), name: "moduletests_deconv")
        let w2 = try #require(Parameters.get("moduletests_deconv/deconv/W"))
        let b2 = try #require(Parameters.get("moduletests_deconv/deconv/b"))
        // PF's layout (inmaps, outmaps / group, *kernel).
        #expect(m.W.shape == [4, 3, 3, 3] && w2.shape == m.W.shape && m.W.d == w2.d)
        let lim = Float((6.0 / (9.0 * 10.0)).squareRoot())
        #expect(m.W.d.allSatisfy { abs($0) <= lim })
        let bias: [Float] = [0.5, 0.25, 0, -0.25, -0.5, 1]
        try m.b?.setData(bias)
        try b2.setData(bias)
        // (in - 1) * stride - 2 pad + dilation (k - 1) + 1 + output_padding: 6, 7.
        #expect(y1.shape == [2, 6, 6, 7] && y2.shape == y1.shape)
        let dy = Harness.random(y1.shape, seed: 33).toFloats()
        try run(y1, dy: dy)
        try run(y2, dy: dy)
        same(y1.d, y2.d, "y")
        same(x1.g, x2.g, "dx")
        same(m.W.g, w2.g, "dW")
        same(m.b?.g ?? [], b2.g, "db")
    }

    // MARK: - BatchNormalization

    @Test func batchNormalizationMatchesPFInTrainingAndEvaluation() throws {
        let bn = try Module.BatchNorm2d(nFeatures: 3, decayRate: 0.8, eps: 1e-3)
        #expect(bn.beta.shape == [1, 3, 1, 1] && bn.gamma.shape == [1, 3, 1, 1])
        #expect(bn.mean.shape == [1, 3, 1, 1] && bn.var.shape == [1, 3, 1, 1])
        #expect(bn.beta.d == [0, 0, 0] && bn.gamma.d == [1, 1, 1] && bn.mean.d == [0, 0, 0] && bn.var.d == [1, 1, 1])
        #expect(bn.beta.needGrad && bn.gamma.needGrad && !bn.mean.needGrad && !bn.var.needGrad)

        let xa = Harness.random([4, 3, 2, 3], seed: 41, in: -2...2)
        let x1 = try Variable(xa, needGrad: true), x2 = try Variable(xa, needGrad: true)
        let y1 = try bn(x1)
        let y2: Variable = try PF.batchNormalization(x2, decayRate: 0.8, eps: 1e-3, name: "moduletests_bn")
        let p: [Variable] = try ["beta", "gamma", "mean", "var"].map { try #require(Parameters.get("moduletests_bn/bn/" + $0)) }
        // Copy non-trivial values across (beta, gamma and the running statistics).
        let values: [[Float]] = [[0.1, -0.2, 0.3], [1.5, 0.5, -1], [0.2, -0.1, 0.05], [2, 0.5, 1.5]]
        for (v, vals) in zip([bn.beta, bn.gamma, bn.mean, bn.var], values) { try v.setData(vals) }
        for (v, vals) in zip(p, values) { try v.setData(vals) }

        let dy = Harness.random([4, 3, 2, 3], seed: 42).toFloats()
        try run(y1, dy: dy)
        try run(y2, dy: dy)
        same(y1.d, y2.d, "y (training)")
        same(x1.g, x2.g, "dx (training)")
        same(bn.beta.g, p[0].g, "dbeta")
        same(bn.gamma.g, p[1].g, "dgamma")
        // The training forward updated the running statistics in place, identically.
        same(bn.mean.d, p[2].d, "running mean")
        same(bn.var.d, p[3].d, "running var")
        #expect(bn.mean.d != values[2])
        // Independent check of the running mean: 0.8 * old + 0.2 * batch mean.
        let x = xa.toFloats()
        for c in 0..<3 {
            var s: Float = 0
            for n in 0..<4 { for i in 0..<6 { s += x[(n * 3 + c) * 6 + i] } }
            #expect(abs(bn.mean.d[c] - (0.8 * values[2][c] + 0.2 * s / 24)) < 1e-5)
        }

        // Evaluation: flip batchStat after construction.
        bn.batchStat = false
        let e1 = try bn(x1)
        let e2: Variable = try PF.batchNormalization(x2, decayRate: 0.8, eps: 1e-3, batchStat: false, name: "moduletests_bn")
        let t1 = try bn(x1, test: true)
        let stats = bn.mean.d, vars = bn.var.d
        try e1.forward()
        try e2.forward()
        try t1.forward()
        same(e1.d, e2.d, "y (evaluation)")
        #expect(t1.d == e1.d)
        #expect(bn.mean.d == stats && bn.var.d == vars)
        // y = gamma (x - mean) / sqrt(var + eps) + beta with the running statistics.
        let g = bn.gamma.d, b = bn.beta.d
        var ref = [Float](repeating: 0, count: x.count)
        for i in 0..<x.count {
            let c = (i / 6) % 3
            ref[i] = g[c] * (x[i] - stats[c]) / (vars[c] + 1e-3).squareRoot() + b[c]
        }
        same(e1.d, ref, "y (evaluation) vs naive", rtol: 1e-4, atol: 1e-5)
        #expect(e1.parent?.function.arguments.first { $0.0 == "batch_stat" }?.1 == .bool(false))
        // test: false forces batch statistics whatever batchStat says.
        let tr = try bn(x1, test: false)
        #expect(tr.parent?.function.arguments.first { $0.0 == "batch_stat" }?.1 == .bool(true))
    }

    @Test func batchNormalizationVariants() throws {
        let bn1 = try Module.BatchNorm1d(nFeatures: 4)
        let bn3 = try Module.BatchNorm3d(nFeatures: 2, fixParameters: true)
        #expect(bn1.gamma.shape == [1, 4, 1] && bn3.gamma.shape == [1, 2, 1, 1, 1])
        #expect(bn3.getParameters().isEmpty)
        #expect(bn3.getParameters(gradOnly: false).map { $0.name } == ["beta", "gamma", "mean", "var"])
        #expect(bn3.getParameters(gradOnly: false).allSatisfy { !$0.variable.needGrad })
        // Channel axis other than 1 and custom initial values.
        let bn = try Module.BatchNormalization(nFeatures: 3, nDims: 3, axes: [2],
                                               paramInit: ["gamma": .constant(2), "var": .values([1, 2, 3])])
        #expect(bn.gamma.shape == [1, 1, 3] && bn.gamma.d == [2, 2, 2] && bn.var.d == [1, 2, 3])
        let y = try bn(try Variable(Harness.random([2, 5, 3], seed: 43)))
        #expect(y.shape == [2, 5, 3])
        // output_stat: [y, batch mean, batch var].
        let s = try Module.BatchNorm1d(nFeatures: 4, outputStat: true)
        let xa = Harness.random([3, 4, 5], seed: 44)
        let outs = try s.callWithStats(try Variable(xa))
        #expect(outs.count == 3 && outs[1].shape == [1, 4, 1] && outs[2].shape == [1, 4, 1])
        try outs[1].forward()
        let x = xa.toFloats()
        for c in 0..<4 {
            var sum: Float = 0
            for n in 0..<3 { for i in 0..<5 { sum += x[(n * 4 + c) * 5 + i] } }
            #expect(abs(outs[1].d[c] - sum / 15) < 1e-5)
        }
        // outputStat with evaluation mode still gives a plain output.
        s.batchStat = false
        let ev = try s(try Variable(xa))
        #expect(ev.shape == [3, 4, 5])
    }

    // MARK: - Embed

    @Test func embedMatchesPFFromTheGlobalGenerator() throws {
        GlobalRandom.seed(17)
        let m = try Module.Embed(nInputs: 5, nFeatures: 3)
        GlobalRandom.seed(17)
        let idx = try Harness.ints([2, 3], [0, 4, 2, 2, 1, 0])
        let x = try Variable(idx)
        let y2 = try PF.embed(x, nInputs: 5, nFeatures: 3, name: "moduletests_embed")
        let w2 = try #require(Parameters.get("moduletests_embed/embed/W"))
        #expect(m.W.d == w2.d)
        #expect(m.W.d == NumpyRandom(seed: 17).uniform(-3.0.squareRoot(), 3.0.squareRoot(), count: 15))
        let y1 = try m(x)
        #expect(y1.shape == [2, 3, 3])
        let dy = Harness.random([2, 3, 3], seed: 45).toFloats()
        try run(y1, dy: dy)
        try run(y2, dy: dy)
        same(y1.d, y2.d, "y")
        same(m.W.g, w2.g, "dW")
        // Row 2 was picked twice: its gradient is the sum of the two output rows.
        for j in 0..<3 { #expect(abs(m.W.g[2 * 3 + j] - (dy[2 * 3 + j] + dy[3 * 3 + j])) < 1e-6) }
        #expect(m.W.g[3 * 3..<4 * 3].allSatisfy { $0 == 0 })
        let fixed = try Module.Embed(nInputs: 2, nFeatures: 2, wInit: .constant(0.5), fixParameters: true)
        #expect(!fixed.W.needGrad && fixed.W.d == [0.5, 0.5, 0.5, 0.5])
    }

    // MARK: - Draw order

    /// Modules built in sequence from one generator draw what the same PF calls draw, in the same order,
    /// and the default generator is the global one.
    @Test func drawOrderMatchesPF() throws {
        let r1 = NumpyRandom(seed: 99), r2 = NumpyRandom(seed: 99)
        let a = try Module.Affine(nInMaps: 8, nOutMaps: 3, bInit: .uniform(low: -1, high: 1), rng: r1)
        let c = try Module.Conv2d(inMaps: 2, outMaps: 3, kernel: [2, 2], rng: r1)
        let x = try Variable(shape: [1, 8])
        _ = try PF.affine(x, outMaps: 3, bInit: .uniform(low: -1, high: 1), rng: r2, name: "moduletests_order")
        _ = try PF.convolution(try Variable(shape: [1, 2, 4, 4]), outMaps: 3, kernel: [2, 2], rng: r2, name: "moduletests_order")
        #expect(a.W.d == Parameters.get("moduletests_order/affine/W")?.d)
        #expect(a.b?.d == Parameters.get("moduletests_order/affine/b")?.d)
        #expect(c.W.d == Parameters.get("moduletests_order/conv/W")?.d)
        #expect(r1.nextUInt32() == r2.nextUInt32())

        GlobalRandom.seed(5)
        let g = try Module.Affine(nInMaps: 4, nOutMaps: 2)
        let (lo, hi) = Initializer.uniformLimGlorot(inmaps: 4, outmaps: 2)
        #expect(g.W.d == NumpyRandom(seed: 5).uniform(lo, hi, count: 8))
    }

    // MARK: - Naming and discovery

    final class Block: Module {
        let conv: Module.Conv2d
        let bn: Module.BatchNorm2d
        init(_ c: Int, fix: Bool = false) throws {
            conv = try Module.Conv2d(inMaps: c, outMaps: c, kernel: [3, 3], pad: [1, 1], fixParameters: fix,
                                     rng: NumpyRandom(seed: 1), withBias: false)
            bn = try Module.BatchNorm2d(nFeatures: c)
            try super.init()
        }
        override func call(_ x: Variable) throws -> Variable { try bn(try conv(x)) }
    }

    class Net: Module {
        let stem: Block
        var scale: Variable
        let blocks: [Block]
        let head: Module.Affine
        let shared: Block
        let nothing: Variable? = nil
        let label = "not a parameter"
        override init() throws {
            stem = try Block(2)
            scale = try Variable(shape: [1], needGrad: true)
            blocks = [try Block(2, fix: true), try Block(2)]
            head = try Module.Affine(nInMaps: 2 * 4 * 4, nOutMaps: 3, rng: NumpyRandom(seed: 2))
            shared = stem
            try super.init()
        }
        override func call(_ x: Variable) throws -> Variable {
            var h = try stem(x)
            for b in blocks { h = try b(h) }
            return try head(h)
        }
    }

    final class BiggerNet: Net {
        let extra: Module.Embed
        override init() throws {
            extra = try Module.Embed(nInputs: 3, nFeatures: 2, wInit: .constant(0))
            try super.init()
        }
    }

    @Test func parameterNamesFollowNnabla() throws {
        let net = try Net()
        #expect(net.getModules().map { $0.name } == ["", "stem", "stem/conv", "stem/bn", "blocks/0", "blocks/0/conv",
                                                      "blocks/0/bn", "blocks/1", "blocks/1/conv", "blocks/1/bn", "head"])
        let all = net.getParameters(gradOnly: false)
        #expect(all.map { $0.name } == [
            "scale",
            "stem/conv/W", "stem/bn/beta", "stem/bn/gamma", "stem/bn/mean", "stem/bn/var",
            "blocks/0/conv/W", "blocks/0/bn/beta", "blocks/0/bn/gamma", "blocks/0/bn/mean", "blocks/0/bn/var",
            "blocks/1/conv/W", "blocks/1/bn/beta", "blocks/1/bn/gamma", "blocks/1/bn/mean", "blocks/1/bn/var",
            "head/W", "head/b",
        ])
        #expect(all.first { $0.name == "stem/conv/W" }?.variable === net.stem.conv.W)
        #expect(all.first { $0.name == "blocks/1/bn/var" }?.variable.shape == [1, 2, 1, 1])
        // grad_only drops the statistics and the fixed convolution of blocks/0.
        #expect(net.getParameters().map { $0.name } == [
            "scale", "stem/conv/W", "stem/bn/beta", "stem/bn/gamma", "blocks/0/bn/beta", "blocks/0/bn/gamma",
            "blocks/1/conv/W", "blocks/1/bn/beta", "blocks/1/bn/gamma", "head/W", "head/b",
        ])
        // Superclass properties first, then the subclass's.
        let bigger = try BiggerNet()
        #expect(bigger.getParameters().map { $0.name }.suffix(3) == ["head/W", "head/b", "extra/W"])
        // The whole network runs and gradients reach every trainable parameter.
        let y = try net(try Variable(Harness.random([2, 2, 4, 4], seed: 50)))
        #expect(y.shape == [2, 3])
        try y.forward()
        try y.backward()
        #expect(net.head.W.g.contains { $0 != 0 } && net.blocks[1].conv.W.g.contains { $0 != 0 })
        // A module reached twice (stem / shared) and cycles are visited once.
        let loop = try Loop()
        loop.next = loop
        #expect(loop.getModules().map { $0.name } == [""])
        #expect(loop.getParameters().map { $0.name } == ["w"])
        loop.next = nil                                      // break the cycle the test made
    }

    final class Loop: Module {
        var next: Module?
        let w: Variable
        override init() throws { w = try Variable(shape: [2], needGrad: true); try super.init() }
    }

    // MARK: - Errors

    @Test func invalidArgumentsThrow() throws {
        #expect(throws: KilnError.self) { try Module.Affine(nInMaps: 0, nOutMaps: 3) }
        #expect(throws: KilnError.self) { try Module.Affine(nInMaps: 3, nOutMaps: [2, 0]) }
        #expect(throws: KilnError.self) { try Module.Affine(nInMaps: 3, nOutMaps: [Int]()) }
        #expect(throws: KilnError.self) { try Module.Affine(nInMaps: 3, nOutMaps: 2, baseAxis: -1) }
        #expect(throws: KilnError.self) { try Module.Affine(nInMaps: 3, nOutMaps: 2, wInit: .values([1, 2])) }
        #expect(throws: KilnError.self) { try Module.Affine(nInMaps: 1 << 40, nOutMaps: 1 << 40) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 3, outMaps: 4, kernel: [3, 3], group: 2) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 3, kernel: [3, 3], group: 2) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], group: 0) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: []) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: [3, 0]) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], pad: [1]) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], stride: [1, 0]) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], dilation: [0, 1]) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], pad: [-1, 0]) }
        #expect(throws: KilnError.self) { try Module.Conv2d(inMaps: -4, outMaps: 4, kernel: [3, 3]) }
        #expect(throws: KilnError.self) { try Module.Deconv2d(inMaps: 4, outMaps: 3, kernel: [3, 3], group: 2) }
        #expect(throws: KilnError.self) { try Module.Deconv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], outputPadding: [1, 1]) }
        #expect(throws: KilnError.self) {
            try Module.Deconv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], stride: [2, 2], outputPadding: [2, 0])
        }
        #expect(throws: KilnError.self) { try Module.BatchNormalization(nFeatures: 3, nDims: 4, axes: [1, 2]) }
        #expect(throws: KilnError.self) { try Module.BatchNormalization(nFeatures: 3, nDims: 4, axes: [4]) }
        #expect(throws: KilnError.self) { try Module.BatchNormalization(nFeatures: 3, nDims: 4, axes: [-1]) }
        #expect(throws: KilnError.self) { try Module.BatchNormalization(nFeatures: 0, nDims: 4) }
        #expect(throws: KilnError.self) { try Module.BatchNormalization(nFeatures: 3, nDims: 1, axes: [0]) }
        #expect(throws: KilnError.self) { try Module.BatchNorm2d(nFeatures: 3, eps: -1) }
        #expect(throws: KilnError.self) { try Module.BatchNorm2d(nFeatures: 3, paramInit: ["scale": .constant(1)]) }
        #expect(throws: KilnError.self) { try Module.BatchNorm2d(nFeatures: 3, paramInit: ["gamma": .values([1, 2])]) }
        #expect(throws: KilnError.self) { try Module.Embed(nInputs: 0, nFeatures: 3) }
        #expect(throws: KilnError.self) { try Module.Embed(nInputs: 3, nFeatures: -1) }
    }

    @Test func invalidInputsThrowWhenCalled() throws {
        let conv = try Module.Conv2d(inMaps: 4, outMaps: 4, kernel: [3, 3], group: 2)
        #expect(throws: KilnError.self) { try conv(try Variable(shape: [2, 4, 5])) }          // 1-D input, 2-D kernel
        #expect(throws: KilnError.self) { try conv(try Variable(shape: [2, 4, 5, 5, 5])) }    // 3-D input
        #expect(throws: KilnError.self) { try conv(try Variable(shape: [2, 3, 5, 5])) }       // channels
        #expect(throws: KilnError.self) { try conv(try Variable(shape: [2, 4, 2, 5])) }       // kernel > input
        #expect(throws: KilnError.self) { try conv(try Variable(shape: [4])) }
        let deconv = try Module.Deconv1d(inMaps: 2, outMaps: 2, kernel: [3])
        #expect(throws: KilnError.self) { try deconv(try Variable(shape: [2, 2, 5, 5])) }
        #expect(throws: KilnError.self) { try deconv(try Variable(shape: [2, 3, 5])) }
        let affine = try Module.Affine(nInMaps: 6, nOutMaps: 2, baseAxis: 2)
        #expect(throws: KilnError.self) { try affine(try Variable(shape: [2, 5])) }            // nothing after base_axis: 1 != 6
        #expect(throws: KilnError.self) { try affine(try Variable(shape: [2, 3, 5])) }         // inner 5 != 6
        #expect(try affine(try Variable(shape: [2, 3, 6])).shape == [2, 3, 2])
        affine.baseAxis = 5
        #expect(throws: KilnError.self) { try affine(try Variable(shape: [2, 3, 6])) }
        let bn = try Module.BatchNorm2d(nFeatures: 3)
        #expect(throws: KilnError.self) { try bn(try Variable(shape: [2, 3, 4])) }
        #expect(throws: KilnError.self) { try bn(try Variable(shape: [2, 4, 4, 4])) }
        bn.batchStat = false
        #expect(throws: KilnError.self) { try bn.callWithStats(try Variable(shape: [2, 3, 4, 4])) }
        let embed = try Module.Embed(nInputs: 3, nFeatures: 2)
        #expect(throws: KilnError.self) { try embed(try Variable(shape: [4])) }               // float indices
        // A plain Module has no computation.
        #expect(throws: KilnError.self) { try Module()(try Variable(shape: [1])) }
        // A replaced weight of the wrong shape is caught by the function, not a crash.
        let lin = try Module.Affine(nInMaps: 3, nOutMaps: 2)
        lin.W = try Variable(shape: [4, 2])
        #expect(throws: KilnError.self) { try lin(try Variable(shape: [1, 3])) }
    }
}

/// nnabla's class aliases can be written outside a `Module` subclass, where `Affine` names the function type.
@Suite struct LayerAliasTests {
    @Test func aliasesNameTheClassesAnywhere() throws {
        let fc = try Linear(nInMaps: 4, nOutMaps: 2, wInit: .constant(0.5), bInit: .constant(1))
        #expect(fc.getParameters().names == ["W", "b"])
        let x = try Variable(NDArray(shape: [1, 4], floats: [1, 2, 3, 4]))
        let y = try fc(x)
        try y.forward()
        #expect(y.d == [6, 6])   // 0.5 * (1 + 2 + 3 + 4) + 1, by hand
        let conv = try Conv2d(inMaps: 1, outMaps: 3, kernel: [3, 3])
        #expect(conv.W.shape == [3, 1, 3, 3])
        let bn = try BatchNorm2d(nFeatures: 3)
        #expect(bn.getParameters(gradOnly: false).names == ["beta", "gamma", "mean", "var"])
        #expect(Linear.self == Module.Affine.self && Deconv2d.self == Module.Deconvolution.self)
    }
}
