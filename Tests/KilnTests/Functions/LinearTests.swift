import Testing
@testable import Kiln

/// Plain-loop references for Affine, Convolution and Deconvolution, written from nnabla's definitions and
/// sharing nothing with the kernels.
enum LinearReference {
    /// Every multi-index of `shape` in row-major order.
    static func indices(_ shape: [Int]) -> [[Int]] {
        var out: [[Int]] = [[]]
        for d in shape {
            var next: [[Int]] = []
            for prefix in out { for i in 0..<d { next.append(prefix + [i]) } }
            out = next
        }
        return out
    }

    static func flat(_ idx: [Int], _ shape: [Int]) -> Int {
        var f = 0
        for (i, d) in zip(idx, shape) { f = f * d + i }
        return f
    }

    static func affine(_ x: NDArray, _ w: NDArray, _ b: NDArray?, baseAxis: Int) -> (shape: [Int], data: [Float]) {
        let rows = x.shape[0..<baseAxis].reduce(1, *)
        let inner = x.shape[baseAxis...].reduce(1, *)
        let cols = w.shape[1...].reduce(1, *)
        let xv = x.toFloats(), wv = w.toFloats(), bv = b?.toFloats()
        var y = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols {
                var s: Double = bv.map { Double($0[c]) } ?? 0
                for i in 0..<inner { s += Double(xv[r * inner + i]) * Double(wv[i * cols + c]) }
                y[r * cols + c] = Float(s)
            }
        }
        return (Array(x.shape[0..<baseAxis]) + Array(w.shape[1...]), y)
    }

    /// Direct convolution: y[n, m, o] = b[m] + sum_{c in group(m), k} x[n, c, o*s - p + k*d] * W[m, c', k].
    static func convolution(_ x: NDArray, _ w: NDArray, _ b: NDArray?, baseAxis: Int, pad: [Int], stride: [Int],
                            dilation: [Int], group: Int) -> (shape: [Int], data: [Float]) {
        let batch = x.shape[0..<baseAxis].reduce(1, *)
        let c = x.shape[baseAxis]
        let spatial = Array(x.shape[(baseAxis + 1)...])
        let m = w.shape[0], cg = w.shape[1]
        let kernel = Array(w.shape[2...])
        let out = spatial.indices.map { i in
            (spatial[i] + 2 * pad[i] - dilation[i] * (kernel[i] - 1) - 1) / stride[i] + 1
        }
        let xv = x.toFloats(), wv = w.toFloats(), bv = b?.toFloats()
        let outCount = out.reduce(1, *), inCount = spatial.reduce(1, *)
        var y = [Float](repeating: 0, count: batch * m * outCount)
        let mg = m / group
        for n in 0..<batch {
            for mo in 0..<m {
                let g = mo / mg
                for o in indices(out) {
                    var s: Double = bv.map { Double($0[mo]) } ?? 0
                    for cl in 0..<cg {
                        let ci = g * cg + cl
                        for k in indices(kernel) {
                            let pos = o.indices.map { j in o[j] * stride[j] - pad[j] + k[j] * dilation[j] }
                            if zip(pos, spatial).contains(where: { $0 < 0 || $0 >= $1 }) { continue }
                            let xi = (n * c + ci) * inCount + flat(pos, spatial)
                            let wi = (mo * cg + cl) * kernel.reduce(1, *) + flat(k, kernel)
                            s += Double(xv[xi]) * Double(wv[wi])
                        }
                    }
                    y[(n * m + mo) * outCount + flat(o, out)] = Float(s)
                }
            }
        }
        return (Array(x.shape[0..<baseAxis]) + [m] + out, y)
    }

    /// Direct transposed convolution: scatter x[n, c, i] * W[c, m', k] to y[n, g*M'+m', i*s - p + k*d].
    static func deconvolution(_ x: NDArray, _ w: NDArray, _ b: NDArray?, baseAxis: Int, pad: [Int], stride: [Int],
                              dilation: [Int], group: Int, outputPadding: [Int]) -> (shape: [Int], data: [Float]) {
        let batch = x.shape[0..<baseAxis].reduce(1, *)
        let c = x.shape[baseAxis]
        let spatial = Array(x.shape[(baseAxis + 1)...])
        let mg = w.shape[1], m = mg * group, cg = c / group
        let kernel = Array(w.shape[2...])
        let out = spatial.indices.map { i in
            stride[i] * (spatial[i] - 1) - 2 * pad[i] + dilation[i] * (kernel[i] - 1) + 1 + outputPadding[i]
        }
        let xv = x.toFloats(), wv = w.toFloats(), bv = b?.toFloats()
        let outCount = out.reduce(1, *), inCount = spatial.reduce(1, *)
        var y = [Double](repeating: 0, count: batch * m * outCount)
        if let bv {
            for n in 0..<batch { for mo in 0..<m { for o in 0..<outCount { y[(n * m + mo) * outCount + o] = Double(bv[mo]) } } }
        }
        for n in 0..<batch {
            for ci in 0..<c {
                let g = ci / cg
                for i in indices(spatial) {
                    let xval = Double(xv[(n * c + ci) * inCount + flat(i, spatial)])
                    for ml in 0..<mg {
                        let mo = g * mg + ml
                        for k in indices(kernel) {
                            let pos = i.indices.map { j in i[j] * stride[j] - pad[j] + k[j] * dilation[j] }
                            if zip(pos, out).contains(where: { $0 < 0 || $0 >= $1 }) { continue }
                            let wi = (ci * mg + ml) * kernel.reduce(1, *) + flat(k, kernel)
                            y[(n * m + mo) * outCount + flat(pos, out)] += xval * Double(wv[wi])
                        }
                    }
                }
            }
        }
        return (Array(x.shape[0..<baseAxis]) + [m] + out, y.map { Float($0) })
    }
}

struct LinearTests {
    // MARK: helpers

    /// Checks every wanted gradient of `f` against central finite differences, and the accumulate path.
    func checkGradients(_ f: any Function, _ inputs: [NDArray], seed: UInt64) throws {
        let outType = try f.outputTypes(inputs.map { $0.type })[0]
        let dy = Harness.random(outType.shape, seed: seed)
        let want = [Bool](repeating: true, count: inputs.count)
        let grads = try Harness.backward(f, inputs: inputs, outputGrads: [dy], want: want)
        for i in inputs.indices {
            let g = try #require(grads[i])
            let num = try Harness.numericalGradient(f, inputs: inputs, outputGrads: [dy], index: i)
            let m = mismatch(g.toFloats(), num, rtol: 1e-2, atol: 2e-3)
            #expect(m == nil, "\(f.typeName) d input \(i): \(m ?? "")")
            // Asking for this gradient alone gives the same values.
            var only = [Bool](repeating: false, count: inputs.count)
            only[i] = true
            let alone = try Harness.backward(f, inputs: inputs, outputGrads: [dy], want: only)
            #expect(alone[i]?.toFloats() == g.toFloats(), "\(f.typeName) d input \(i) alone")
        }
        // Accumulate mode adds to what is there.
        let initial: [NDArray?] = inputs.indices.map { Harness.random(inputs[$0].shape, seed: seed + UInt64($0) + 100) }
        let acc = try Harness.backward(f, inputs: inputs, outputGrads: [dy], want: want, initial: initial)
        for i in inputs.indices {
            let expected = zip(grads[i]!.toFloats(), initial[i]!.toFloats()).map { $0 + $1 }
            let m = mismatch(acc[i]!.toFloats(), expected, rtol: 1e-5, atol: 1e-5)
            #expect(m == nil, "\(f.typeName) accumulate d input \(i): \(m ?? "")")
        }
    }

    // MARK: Affine

    @Test func affineMatchesNaiveReference() throws {
        for (xs, ws, base, bias) in [([3, 4], [4, 5], 1, true), ([2, 3, 2, 2], [4, 3, 2], 2, true),
                                     ([2, 3, 4], [12, 7], 1, false), ([6], [6, 3], 0, true)] {
            let x = Harness.random(xs, seed: 1), w = Harness.random(ws, seed: 2)
            let b = bias ? Harness.random(Array(ws[1...]), seed: 3) : nil
            let f = Affine(baseAxis: base)
            let y = try Harness.forward1(f, [x, w] + (b.map { [$0] } ?? []))
            let ref = LinearReference.affine(x, w, b, baseAxis: base)
            #expect(y.shape == ref.shape)
            let m = mismatch(y.toFloats(), ref.data, rtol: 1e-5, atol: 1e-5)
            #expect(m == nil, "affine \(xs) \(ws): \(m ?? "")")
        }
    }

    @Test func affineGradientsMatchFiniteDifferences() throws {
        try checkGradients(Affine(), [Harness.random([3, 4], seed: 4), Harness.random([4, 5], seed: 5),
                                      Harness.random([5], seed: 6)], seed: 7)
        try checkGradients(Affine(baseAxis: 2), [Harness.random([2, 2, 3], seed: 8), Harness.random([3, 2, 2], seed: 9),
                                                 Harness.random([2, 2], seed: 10)], seed: 11)
        try checkGradients(Affine(), [Harness.random([2, 3], seed: 12), Harness.random([3, 4], seed: 13)], seed: 14)
    }

    @Test func affineRejectsBadInputs() throws {
        let f = Affine()
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4]), TensorType([5, 2])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4]), TensorType([4, 2]), TensorType([3])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4], .int32), TensorType([4, 2])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4]), TensorType([4])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4])]) }
        #expect(throws: KilnError.self) { try Affine(baseAxis: 2).outputTypes([TensorType([3, 4]), TensorType([1, 2])]) }
    }

    // MARK: Convolution

    struct ConvCase {
        var x: [Int], w: [Int], base = 1, pad: [Int], stride: [Int], dilation: [Int], group = 1, bias = true
    }

    static let convCases: [ConvCase] = [
        ConvCase(x: [2, 3, 9], w: [4, 3, 3], pad: [1], stride: [2], dilation: [1]),
        ConvCase(x: [2, 4, 7, 6], w: [6, 2, 3, 2], pad: [1, 2], stride: [2, 1], dilation: [1, 2], group: 2),
        ConvCase(x: [1, 4, 6, 6], w: [4, 1, 3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1], group: 4, bias: false),
        ConvCase(x: [1, 2, 5, 4, 6], w: [3, 2, 2, 3, 2], pad: [1, 0, 1], stride: [2, 1, 2], dilation: [1, 1, 2]),
        ConvCase(x: [2, 2, 3, 5, 5], w: [2, 3, 3, 3], base: 2, pad: [0, 1], stride: [1, 2], dilation: [1, 1]),
        ConvCase(x: [2, 6, 4, 5], w: [4, 6, 1, 1], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),       // pointwise
        ConvCase(x: [2, 6, 4, 5], w: [4, 3, 1, 1], pad: [0, 0], stride: [1, 1], dilation: [1, 1], group: 2), // pointwise, groups
        ConvCase(x: [1, 3, 5, 5], w: [2, 3, 1, 1], pad: [1, 0], stride: [2, 2], dilation: [1, 1]),       // 1x1 strided, padded
        ConvCase(x: [1, 2, 4, 4], w: [2, 2, 4, 4], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),       // kernel = input
        ConvCase(x: [1, 1, 3, 3], w: [1, 1, 2, 2], pad: [3, 3], stride: [3, 3], dilation: [2, 2]),       // mostly padding
        ConvCase(x: [2, 3, 5, 41], w: [4, 3, 3, 3], pad: [1, 1], stride: [2, 2], dilation: [1, 1]),      // stride 2, wide rows (8-wide steps)
        ConvCase(x: [1, 2, 4, 38], w: [3, 2, 1, 1], pad: [0, 0], stride: [1, 2], dilation: [1, 1]),      // 1x1 stride 2, wide rows
        ConvCase(x: [1, 2, 3, 32], w: [2, 2, 1, 1], pad: [0, 0], stride: [2, 2], dilation: [1, 1]),      // 16 outputs: last 8 shifted
        ConvCase(x: [2, 5, 6, 16], w: [3, 5, 3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1]),      // 3x3 same-size, odd maps
        ConvCase(x: [1, 3, 4, 8], w: [4, 3, 3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1], bias: false), // 3x3 same-size, 8 wide
        ConvCase(x: [2, 2, 3, 32], w: [2, 2, 3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1]),      // 3x3 same-size, 32 wide
    ]

    func convInputs(_ c: ConvCase, seed: UInt64) -> [NDArray] {
        let x = Harness.random(c.x, seed: seed), w = Harness.random(c.w, seed: seed + 1)
        return c.bias ? [x, w, Harness.random([c.w[0]], seed: seed + 2)] : [x, w]
    }

    @Test func convolutionMatchesNaiveReference() throws {
        for (i, c) in Self.convCases.enumerated() {
            let ins = convInputs(c, seed: UInt64(10 * i))
            let f = Convolution(baseAxis: c.base, pad: c.pad, stride: c.stride, dilation: c.dilation, group: c.group)
            let y = try Harness.forward1(f, ins)
            let ref = LinearReference.convolution(ins[0], ins[1], c.bias ? ins[2] : nil, baseAxis: c.base, pad: c.pad,
                                                  stride: c.stride, dilation: c.dilation, group: c.group)
            #expect(y.shape == ref.shape, "case \(i)")
            let m = mismatch(y.toFloats(), ref.data, rtol: 1e-4, atol: 1e-5)
            #expect(m == nil, "convolution case \(i): \(m ?? "")")
        }
    }

    @Test func convolutionGradientsMatchFiniteDifferences() throws {
        for (i, c) in Self.convCases.enumerated() {
            let f = Convolution(baseAxis: c.base, pad: c.pad, stride: c.stride, dilation: c.dilation, group: c.group)
            try checkGradients(f, convInputs(c, seed: UInt64(10 * i + 3)), seed: UInt64(i + 500))
        }
    }

    @Test func convolutionDefaultsResolveFromTheKernelRank() throws {
        let x = Harness.random([2, 3, 6, 5], seed: 40), w = Harness.random([4, 3, 3, 2], seed: 41)
        let y = try Harness.forward1(Convolution(), [x, w])
        let ref = LinearReference.convolution(x, w, nil, baseAxis: 1, pad: [0, 0], stride: [1, 1], dilation: [1, 1], group: 1)
        #expect(y.shape == [2, 4, 4, 4])
        #expect(mismatch(y.toFloats(), ref.data, rtol: 1e-4, atol: 1e-5) == nil)
        // A graph file without the per-dimension arguments gets the same defaults.
        let g = try FunctionRegistry.make(type: "Convolution", arguments: [:])
        #expect(try g.outputTypes([x.type, w.type])[0].shape == [2, 4, 4, 4])
    }

    /// Batches larger than one chunk of side-by-side columns (34x34 images: one sample per product, batch 5:
    /// five chunks; 12x12: four samples per product, chunks 4 and 1), with groups: forward, data gradient and
    /// weight gradient, on one thread and with the chunks split over two (private transposed weight-gradient
    /// accumulators summed at the end).
    @Test(arguments: [1, 2], [34, 12])
    func convolutionSpanningSeveralChunks(threads: Int, size: Int) throws {
        try Threads.with(threads) { try checkSeveralChunks(size) }
    }

    func checkSeveralChunks(_ size: Int) throws {
        let c = ConvCase(x: [5, 4, size, size], w: [4, 2, 3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1], group: 2)
        let ins = convInputs(c, seed: 91)
        let f = Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation, group: c.group)
        let y = try Harness.forward1(f, ins)
        let ref = LinearReference.convolution(ins[0], ins[1], ins[2], baseAxis: 1, pad: c.pad, stride: c.stride,
                                              dilation: c.dilation, group: c.group)
        #expect(mismatch(y.toFloats(), ref.data, rtol: 1e-4, atol: 1e-4) == nil)
        let dy = Harness.random(y.shape, seed: 92)
        let grads = try Harness.backward(f, inputs: ins, outputGrads: [dy], want: [true, true, true])
        let refDx = LinearReference.deconvolution(dy, ins[1], nil, baseAxis: 1, pad: c.pad, stride: c.stride,
                                                  dilation: c.dilation, group: c.group, outputPadding: [0, 0])
        #expect(mismatch(grads[0]!.toFloats(), refDx.data, rtol: 1e-4, atol: 1e-4) == nil)
        let numW = try Harness.numericalGradient(f, inputs: ins, outputGrads: [dy], index: 1)
        #expect(mismatch(grads[1]!.toFloats(), numW, rtol: 1e-2, atol: 2e-2) == nil)
        // db is the per-channel sum of dy.
        var db = [Float](repeating: 0, count: 4)
        let d = dy.toFloats()
        for n in 0..<5 { for o in 0..<4 { for p in 0..<(size * size) { db[o] += d[(n * 4 + o) * size * size + p] } } }
        #expect(mismatch(grads[2]!.toFloats(), db, rtol: 1e-4, atol: 1e-3) == nil)
    }

    @Test func convolutionRunsLargeShapesWithThreads() throws {
        try Threads.with(2) { try checkLargeShapesWithThreads() }
    }

    /// The pointwise forward shares its (sample, block of columns) products between threads: 3 samples of 7 blocks
    /// (256 maps make blocks of 256 of the 1600 columns, the last partial), 2 groups; the same bits on 1 and 2
    /// threads, and the naive convolution's values.
    @Test func pointwiseConvolutionSplitsOverThreads() throws {
        let c = ConvCase(x: [3, 8, 40, 40], w: [256, 4, 1, 1], pad: [0, 0], stride: [1, 1], dilation: [1, 1], group: 2)
        let ins = convInputs(c, seed: 81)
        let f = Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation, group: c.group)
        let one = try Threads.with(1) { try Harness.forward1(f, ins) }
        let two = try Threads.with(2) { try Harness.forward1(f, ins) }
        #expect(one.toFloats().map(\.bitPattern) == two.toFloats().map(\.bitPattern))
        let ref = LinearReference.convolution(ins[0], ins[1], ins[2], baseAxis: 1, pad: c.pad, stride: c.stride,
                                              dilation: c.dilation, group: c.group)
        #expect(mismatch(two.toFloats(), ref.data, rtol: 1e-4, atol: 1e-4) == nil)
    }

    func checkLargeShapesWithThreads() throws {
        // 72 column rows x 1936 positions: above Threads.minimumWork, so im2col and col2im split over threads.
        let c = ConvCase(x: [1, 8, 44, 44], w: [2, 8, 3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1])
        let ins = convInputs(c, seed: 77)
        let f = Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation, group: c.group)
        let y = try Harness.forward1(f, ins)
        let ref = LinearReference.convolution(ins[0], ins[1], ins[2], baseAxis: 1, pad: c.pad, stride: c.stride,
                                              dilation: c.dilation, group: c.group)
        #expect(mismatch(y.toFloats(), ref.data, rtol: 1e-4, atol: 1e-4) == nil)
        // The data gradient is the transposed convolution of dy with the same weight.
        let dy = Harness.random(y.shape, seed: 78)
        let dx = try Harness.backward(f, inputs: ins, outputGrads: [dy], want: [true, false, false])[0]!
        let refDx = LinearReference.deconvolution(dy, ins[1], nil, baseAxis: 1, pad: c.pad, stride: c.stride,
                                                  dilation: c.dilation, group: c.group, outputPadding: [0, 0])
        #expect(mismatch(dx.toFloats(), refDx.data, rtol: 1e-4, atol: 1e-4) == nil)
    }

    @Test func convolutionRejectsBadInputs() throws {
        let f = Convolution()
        // channel mismatch
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 2, 3, 3])]) }
        // group does not divide the channels / the outmaps
        #expect(throws: KilnError.self) { try Convolution(group: 2).outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 1, 3, 3])]) }
        #expect(throws: KilnError.self) { try Convolution(group: 2).outputTypes([TensorType([1, 4, 5, 5]), TensorType([3, 2, 3, 3])]) }
        #expect(throws: KilnError.self) { try Convolution(group: 0).outputTypes([TensorType([1, 4, 5, 5]), TensorType([4, 4, 3, 3])]) }
        // kernel larger than the padded input (dilation counts)
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 2, 5]), TensorType([4, 3, 3, 3])]) }
        #expect(throws: KilnError.self) {
            try Convolution(dilation: [3, 1]).outputTypes([TensorType([1, 3, 6, 5]), TensorType([4, 3, 3, 3])])
        }
        // wrong bias shape, int input, wrong rank, argument lengths, bad values, channel_last
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 3, 3, 3]), TensorType([3])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 3, 3, 3]), TensorType([1, 4])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 5, 5], .int32), TensorType([4, 3, 3, 3])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 5, 5]), TensorType([4, 3, 3, 3])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 3])]) }
        #expect(throws: KilnError.self) { try Convolution(pad: [1]).outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 3, 3, 3])]) }
        #expect(throws: KilnError.self) { try Convolution(stride: [0, 1]).outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 3, 3, 3])]) }
        #expect(throws: KilnError.self) { try Convolution(pad: [-1, 0]).outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 3, 3, 3])]) }
        #expect(throws: KilnError.self) { try Convolution(channelLast: true).outputTypes([TensorType([1, 3, 5, 5]), TensorType([4, 3, 3, 3])]) }
        #expect(throws: KilnError.self) { try FunctionRegistry.make(type: "Convolution", arguments: ["pad": .string("x")]) }
    }

    // MARK: Deconvolution

    struct DeconvCase {
        var x: [Int], w: [Int], base = 1, pad: [Int], stride: [Int], dilation: [Int], group = 1, op: [Int], bias = true
    }

    static let deconvCases: [DeconvCase] = [
        DeconvCase(x: [2, 3, 5], w: [3, 2, 3], pad: [1], stride: [2], dilation: [1], op: [1]),
        DeconvCase(x: [1, 4, 3, 4], w: [4, 3, 3, 2], pad: [1, 0], stride: [2, 3], dilation: [2, 1], group: 2, op: [1, 2]),
        DeconvCase(x: [2, 2, 3, 3, 2], w: [2, 2, 2, 2, 3], pad: [0, 1, 0], stride: [1, 2, 2], dilation: [1, 1, 2], op: [0, 1, 0], bias: false),
        DeconvCase(x: [2, 3, 2, 4, 3], w: [2, 2, 3, 2], base: 2, pad: [1, 1], stride: [2, 1], dilation: [1, 1], op: [0, 0]),
        DeconvCase(x: [2, 6, 3, 4], w: [6, 2, 1, 1], pad: [0, 0], stride: [1, 1], dilation: [1, 1], group: 3, op: [0, 0]), // pointwise
        DeconvCase(x: [1, 3, 3, 3], w: [3, 2, 1, 1], pad: [0, 0], stride: [2, 2], dilation: [1, 1], op: [1, 0]),          // 1x1 strided
    ]

    func deconvInputs(_ c: DeconvCase, seed: UInt64) -> [NDArray] {
        let x = Harness.random(c.x, seed: seed), w = Harness.random(c.w, seed: seed + 1)
        return c.bias ? [x, w, Harness.random([c.w[1] * c.group], seed: seed + 2)] : [x, w]
    }

    func deconv(_ c: DeconvCase) -> Deconvolution {
        Deconvolution(baseAxis: c.base, pad: c.pad, stride: c.stride, dilation: c.dilation, group: c.group, outputPadding: c.op)
    }

    @Test func deconvolutionMatchesNaiveReference() throws {
        for (i, c) in Self.deconvCases.enumerated() {
            let ins = deconvInputs(c, seed: UInt64(20 * i + 1))
            let y = try Harness.forward1(deconv(c), ins)
            let ref = LinearReference.deconvolution(ins[0], ins[1], c.bias ? ins[2] : nil, baseAxis: c.base, pad: c.pad,
                                                    stride: c.stride, dilation: c.dilation, group: c.group, outputPadding: c.op)
            #expect(y.shape == ref.shape, "case \(i)")
            let m = mismatch(y.toFloats(), ref.data, rtol: 1e-4, atol: 1e-5)
            #expect(m == nil, "deconvolution case \(i): \(m ?? "")")
        }
    }

    @Test func deconvolutionGradientsMatchFiniteDifferences() throws {
        for (i, c) in Self.deconvCases.enumerated() {
            try checkGradients(deconv(c), deconvInputs(c, seed: UInt64(20 * i + 5)), seed: UInt64(i + 900))
        }
    }

    @Test func deconvolutionRejectsBadInputs() throws {
        let f = Deconvolution()
        // inmaps mismatch
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 4, 4]), TensorType([2, 2, 3, 3])]) }
        // group does not divide the channels
        #expect(throws: KilnError.self) { try Deconvolution(group: 2).outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3])]) }
        // output_padding must be < stride (even with a larger dilation), and >= 0
        #expect(throws: KilnError.self) {
            try Deconvolution(stride: [2, 2], dilation: [3, 3], outputPadding: [2, 0]).outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3])])
        }
        #expect(throws: KilnError.self) {
            try Deconvolution(outputPadding: [1, 0]).outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3])])
        }
        #expect(throws: KilnError.self) {
            try Deconvolution(stride: [2, 2], outputPadding: [-1, 0]).outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3])])
        }
        #expect(throws: KilnError.self) {
            try Deconvolution(outputPadding: [0]).outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3])])
        }
        // padding that leaves no output
        #expect(throws: KilnError.self) { try Deconvolution(pad: [3, 0]).outputTypes([TensorType([1, 3, 2, 2]), TensorType([3, 2, 2, 2])]) }
        // wrong bias shape (outmaps = weight.shape[1] * group), int input, wrong rank, channel_last
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3]), TensorType([3])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3], .int32)]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4, 4]), TensorType([3, 2, 3, 3])]) }
        #expect(throws: KilnError.self) { try Deconvolution(channelLast: true).outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3])]) }
        // a correct bias with groups is accepted
        let t = try Deconvolution(group: 3).outputTypes([TensorType([1, 3, 4, 4]), TensorType([3, 2, 3, 3]), TensorType([6])])
        #expect(t[0].shape == [1, 6, 6, 6])
    }

    // MARK: Swift API and graph files

    @Test func swiftAPIResolvesArgumentsAndRoundTrips() throws {
        let x = try Variable(shape: [2, 3, 8, 8])
        let w = try Variable(shape: [4, 3, 3, 3])
        let b = try Variable(shape: [4])
        let y = try F.convolution(x, w, b, pad: [1, 1], stride: [2, 2])
        #expect(y.shape == [2, 4, 4, 4])
        let conv = try #require(y.parent?.function)
        #expect(conv.arguments.map { $0.0 } == ["base_axis", "pad", "stride", "dilation", "group", "channel_last"])
        #expect(conv.arguments.first { $0.0 == "dilation" }?.1 == .ints([1, 1]))
        let again = try FunctionRegistry.make(type: "Convolution", arguments: Dictionary(uniqueKeysWithValues: conv.arguments))
        #expect(again.arguments.map { "\($0.0)=\($0.1)" } == conv.arguments.map { "\($0.0)=\($0.1)" })

        let wd = try Variable(shape: [3, 2, 3, 3])
        let z = try F.deconvolution(x, wd, group: 1, outputPadding: nil)
        #expect(z.shape == [2, 2, 10, 10])
        let deconvF = try #require(z.parent?.function)
        #expect(deconvF.arguments.map { $0.0 } == ["base_axis", "pad", "stride", "dilation", "group", "channel_last", "output_padding"])
        #expect(deconvF.arguments.last?.1 == .ints([0, 0]))
        let again2 = try FunctionRegistry.make(type: "Deconvolution", arguments: Dictionary(uniqueKeysWithValues: deconvF.arguments))
        #expect(again2.arguments.map { "\($0.0)=\($0.1)" } == deconvF.arguments.map { "\($0.0)=\($0.1)" })

        let a = try F.affine(try Variable(shape: [5, 2, 3]), try Variable(shape: [6, 4, 2]), try Variable(shape: [4, 2]))
        #expect(a.shape == [5, 4, 2])
        #expect(throws: KilnError.self) { try F.affine(x, w) }
        #expect(throws: KilnError.self) { try F.convolution(x, wd) }
    }

    @Test func graphForwardAndBackwardThroughAPlan() throws {
        let xa = Harness.random([2, 2, 5, 5], seed: 60), wa = Harness.random([3, 2, 3, 3], seed: 61)
        let x = try Variable(xa, needGrad: true), w = try Variable(wa, needGrad: true)
        let y = try F.convolution(x, w, pad: [1, 1])
        let z = try F.deconvolution(y, try Variable(Harness.random([3, 2, 2, 2], seed: 62)), stride: [2, 2])
        try z.forward()
        let refY = LinearReference.convolution(xa, wa, nil, baseAxis: 1, pad: [1, 1], stride: [1, 1], dilation: [1, 1], group: 1)
        #expect(mismatch(y.d, refY.data, rtol: 1e-4, atol: 1e-5) == nil)
        #expect(z.shape == [2, 2, 10, 10])
        try z.backward()
        // With dz = 1 everywhere (the default seed), dx is the chain of the two functions' data gradients.
        let f = Convolution(pad: [1, 1])
        let dy = try Harness.backward(Deconvolution(stride: [2, 2]),
                                      inputs: [try Harness.floats(y.shape, y.d), Harness.random([3, 2, 2, 2], seed: 62)],
                                      outputGrads: [try Harness.floats(z.shape, [Float](repeating: 1, count: 200 * 2))],
                                      want: [true, false])[0]!
        let dx = try Harness.backward(f, inputs: [xa, wa], outputGrads: [dy], want: [true, false])[0]!
        #expect(mismatch(x.g, dx.toFloats(), rtol: 1e-4, atol: 1e-5) == nil)
    }
}
