import Foundation
import KilnCore

/// Batch-normalisation loops over a tensor viewed as `(outer, C, inner)` with statistics per channel.
///
/// Statistics are accumulated in Double in one pass, about a pivot (a value of the channel): `E[(x-k)^2] -
/// E[x-k]^2` does not cancel when the mean is large against the spread, as the plain `E[x^2] - E[x]^2` does.
/// Every pass over a tensor is a trip to memory for the zoo's sizes, so the training backward reads x and dy
/// once for all four sums it needs. Channels are independent and split over the threads.
public enum BatchNormKernels {
    public struct Layout {
        public let outer: Int
        public let channels: Int
        public let inner: Int
        /// Elements per channel (M).
        public var perChannel: Int { outer * inner }

        public init(shape: [Int], axis: Int) {
            outer = Shapes.product(shape, 0..<axis)
            channels = shape[axis]
            inner = Shapes.product(shape, (axis + 1)..<shape.count)
        }
    }

    /// Calls `body(offset, count)` for each contiguous run of channel `c`.
    @inline(__always)
    package static func runs(_ l: Layout, _ c: Int, _ body: (Int, Int) -> Void) {
        let step = l.channels * l.inner
        var base = c * l.inner
        for _ in 0..<l.outer {
            body(base, l.inner)
            base += step
        }
    }

    /// `(sum(x - k), sum((x - k)^2))` of `n` floats in Double, 4 lanes wide with four accumulators each (fewer
    /// leave the loop waiting on the latency of its additions rather than on memory). The pivot `k` (a value of
    /// the channel) keeps the one-pass variance free of cancellation when the mean is large against the spread.
    @inline(__always)
    static func powerSums(_ p: UnsafePointer<Float>, _ n: Int, pivot k: Double) -> (Double, Double) {
        typealias D = SIMD4<Double>
        let raw = UnsafeRawPointer(p)
        let kv = D(repeating: k)
        var s0 = D(), s1 = D(), s2 = D(), s3 = D(), q0 = D(), q1 = D(), q2 = D(), q3 = D()
        var i = 0
        while i + 16 <= n {
            let v0 = D(raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)) - kv
            let v1 = D(raw.loadUnaligned(fromByteOffset: i * 4 + 16, as: SIMD4<Float>.self)) - kv
            let v2 = D(raw.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD4<Float>.self)) - kv
            let v3 = D(raw.loadUnaligned(fromByteOffset: i * 4 + 48, as: SIMD4<Float>.self)) - kv
            s0 += v0; s1 += v1; s2 += v2; s3 += v3
            q0.addProduct(v0, v0); q1.addProduct(v1, v1); q2.addProduct(v2, v2); q3.addProduct(v3, v3)
            i += 16
        }
        while i + 4 <= n {
            let v0 = D(raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)) - kv
            s0 += v0
            q0.addProduct(v0, v0)
            i += 4
        }
        var s = ((s0 + s1) + (s2 + s3)).sum(), q = ((q0 + q1) + (q2 + q3)).sum()
        while i < n { let v = Double(p[i]) - k; s += v; q += v * v; i += 1 }
        return (s, q)
    }

    /// `(sum(x - k), sum((x - k)^2), sum(g), sum(g * (x - k)))` in Double: everything the training backward
    /// needs, in one pass over x and the output gradient `g` (`k` as in `powerSums`). `g` is `source`'s: dy as
    /// it is, or masked by a ReLU's output (`MaskedGradient`, which may also store it for a residual's gradient).
    @inline(__always)
    static func backwardSums<G: GradientSource>(_ x: UnsafePointer<Float>, _ source: G, _ n: Int,
                                                pivot k: Double) -> (Double, Double, Double, Double) {
        typealias D = SIMD4<Double>
        let rx = UnsafeRawPointer(x)
        let kv = D(repeating: k)
        // Two sets of accumulators: one set leaves the loop waiting on the latency of its additions.
        var sx = D(), sxx = D(), sd = D(), sdx = D(), tx = D(), txx = D(), td = D(), tdx = D()
        var i = 0
        while i + 8 <= n {
            let v = D(rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)) - kv
            let g = D(source.four(i, store: true))
            let w = D(rx.loadUnaligned(fromByteOffset: i * 4 + 16, as: SIMD4<Float>.self)) - kv
            let h = D(source.four(i + 4, store: true))
            sx += v; sxx.addProduct(v, v)
            sd += g; sdx.addProduct(g, v)
            tx += w; txx.addProduct(w, w)
            td += h; tdx.addProduct(h, w)
            i += 8
        }
        while i + 4 <= n {
            let v = D(rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)) - kv
            let g = D(source.four(i, store: true))
            sx += v; sxx.addProduct(v, v)
            sd += g; sdx.addProduct(g, v)
            i += 4
        }
        var a = (sx + tx).sum(), b = (sxx + txx).sum(), c = (sd + td).sum(), d = (sdx + tdx).sum()
        while i < n {
            let v = Double(x[i]) - k, g = Double(source.one(i, store: true))
            a += v; b += v * v; c += g; d += g * v
            i += 1
        }
        return (a, b, c, d)
    }

    /// `y = (x - mean) * scale + shift`, then `+ residual` and a clamp at 0 when asked, over `n` floats, eight
    /// lanes at a time: LLVM leaves the plain loop scalar, which held BN's forward to a third of memory speed.
    /// The operations and their order are the plain loop's (no fused multiply-add; the clamp is `max(v, 0)`'s
    /// `0 >= v ? 0 : v`), so every element has its bits. BN's forward in both modes and the fused recomputation
    /// (`FusedNormalization`) all normalise through here, which keeps them bit-identical.
    @inline(__always)
    package static func normalize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, mean: Float,
                          scale: Float, shift: Float, residual: UnsafePointer<Float>? = nil, relu: Bool = false) {
        typealias V = SIMD8<Float>
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y), rr = residual.map { UnsafeRawPointer($0) }
        let m = V(repeating: mean), s = V(repeating: scale), b = V(repeating: shift)
        var i = 0
        while i + 8 <= n {
            var v = (rx.loadUnaligned(fromByteOffset: i * 4, as: V.self) - m) * s + b
            if let rr { v += rr.loadUnaligned(fromByteOffset: i * 4, as: V.self) }
            if relu { v.replace(with: 0, where: v .<= 0) }
            ry.storeBytes(of: v, toByteOffset: i * 4, as: V.self)
            i += 8
        }
        while i < n {
            var v = (x[i] - mean) * scale + shift
            if let residual { v += residual[i] }
            y[i] = relu ? max(v, 0) : v
            i += 1
        }
    }

    /// `dx (+)= a*g + b*(x - mean) + c` over `n` floats, eight lanes at a time (the plain loop's operations
    /// and order, as in `normalize`), `g` being `source`'s output gradient: BN's training backward.
    @inline(__always)
    static func gradient<G: GradientSource>(_ source: G, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                            _ n: Int, a: Float, b: Float, c: Float, mean: Float, accumulate: Bool) {
        typealias V = SIMD8<Float>
        let rx = UnsafeRawPointer(x), ro = UnsafeMutableRawPointer(dx)
        let av = V(repeating: a), bv = V(repeating: b), cv = V(repeating: c), m = V(repeating: mean)
        var i = 0
        while i + 8 <= n {
            let v = av * source.eight(i) + bv * (rx.loadUnaligned(fromByteOffset: i * 4, as: V.self) - m) + cv
            ro.storeBytes(of: accumulate ? ro.loadUnaligned(fromByteOffset: i * 4, as: V.self) + v : v,
                          toByteOffset: i * 4, as: V.self)
            i += 8
        }
        while i < n {
            let v = a * source.one(i, store: false) + b * (x[i] - mean) + c
            dx[i] = accumulate ? dx[i] + v : v
            i += 1
        }
    }

    /// `dx (+)= a*dy` over `n` floats, eight lanes at a time: BN's test-mode backward.
    @inline(__always)
    static func scaled(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int, a: Float, accumulate: Bool) {
        typealias V = SIMD8<Float>
        let rd = UnsafeRawPointer(dy), ro = UnsafeMutableRawPointer(dx)
        let av = V(repeating: a)
        var i = 0
        while i + 8 <= n {
            let v = av * rd.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            ro.storeBytes(of: accumulate ? ro.loadUnaligned(fromByteOffset: i * 4, as: V.self) + v : v,
                          toByteOffset: i * 4, as: V.self)
            i += 8
        }
        while i < n { dx[i] = accumulate ? dx[i] + a * dy[i] : a * dy[i]; i += 1 }
    }

    /// A value of channel `c` (its first), the pivot of the one-pass sums.
    @inline(__always)
    static func pivot(_ l: Layout, _ c: Int, _ x: UnsafePointer<Float>) -> Double {
        l.perChannel > 0 ? Double(x[c * l.inner]) : 0
    }

    /// `(sum(dy), sum(dy * (x - mean)))` in Double, 4 lanes wide with two accumulators each.
    @inline(__always)
    static func gradientSums(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int,
                             _ mean: Double) -> (Double, Double) {
        typealias D = SIMD4<Double>
        let rd = UnsafeRawPointer(dy), rx = UnsafeRawPointer(x)
        let mv = D(repeating: mean)
        var s0 = D(), s1 = D(), t0 = D(), t1 = D()
        var i = 0
        while i + 8 <= n {
            let g0 = D(rd.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self))
            let g1 = D(rd.loadUnaligned(fromByteOffset: i * 4 + 16, as: SIMD4<Float>.self))
            s0 += g0; s1 += g1
            t0.addProduct(g0, D(rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)) - mv)
            t1.addProduct(g1, D(rx.loadUnaligned(fromByteOffset: i * 4 + 16, as: SIMD4<Float>.self)) - mv)
            i += 8
        }
        var s = (s0 + s1).sum(), t = (t0 + t1).sum()
        while i < n { let g = Double(dy[i]); s += g; t += g * (Double(x[i]) - mean); i += 1 }
        return (s, t)
    }

    /// Biased batch mean and variance of channel `c` (one pass).
    @inline(__always)
    static func moments(_ l: Layout, _ c: Int, _ x: UnsafePointer<Float>) -> (mean: Double, variance: Double) {
        let k = pivot(l, c, x)
        var s = 0.0, q = 0.0
        runs(l, c) { o, n in
            let (a, b) = powerSums(x + o, n, pivot: k)
            s += a
            q += b
        }
        let m = Double(l.perChannel)
        let shifted = s / m
        return (k + shifted, max(q / m - shifted * shifted, 0))
    }

    /// Channel `c`'s biased batch variance and the float32 mean and scale (`gamma / sqrt(var + eps)`) that the
    /// training forward normalises with: one definition for BN's forward and its fused recomputation
    /// (`FusedNormalization`), which must give the same bits.
    @inline(__always)
    package static func batchNormalizer(_ l: Layout, _ c: Int, _ x: UnsafePointer<Float>, gamma: Float?, eps: Double)
        -> (variance: Double, mean: Float, scale: Float) {
        let (mean, variance) = moments(l, c, x)
        return (variance, Float(mean), Float(Double(gamma ?? 1) / (variance + eps).squareRoot()))
    }

    /// Training forward: normalises with the batch statistics and updates the running ones in place
    /// (`var` with the unbiased batch variance) unless `running` is nil (a recomputation). Optionally writes
    /// the batch mean and biased variance. `residual` and `relu` fuse an Add2 and a ReLU after it
    /// (`FusedNormalization`): `y = relu(bn(x) + residual)` with the separate steps' bits.
    public static func trainingForward(_ l: Layout, x: UnsafePointer<Float>, beta: UnsafePointer<Float>?,
                                       gamma: UnsafePointer<Float>?,
                                       running: (mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>)?,
                                       y: UnsafeMutablePointer<Float>,
                                       batchMean: UnsafeMutablePointer<Float>?, batchVar: UnsafeMutablePointer<Float>?,
                                       decay: Float, eps: Double, residual: UnsafePointer<Float>? = nil,
                                       relu: Bool = false) {
        let m = l.perChannel
        let unbias = Double(m) / Double(m - 1)
        Threads.items(l.channels, workPerItem: 3 * m,
                      TrainingForwardChannels(l: l, x: x, beta: beta, gamma: gamma, runningMean: running?.mean,
                                              runningVar: running?.variance, y: y, batchMean: batchMean, batchVar: batchVar,
                                              decay: decay, eps: eps, unbias: unbias, residual: residual, relu: relu))
    }

    /// The factor of test mode, `gamma / sqrt(var + eps)`: one definition for the BN kernel and fused epilogues.
    @inline(__always)
    package static func testScale(gamma: Float?, variance: Float, eps: Double) -> Float {
        Float(Double(gamma ?? 1) / (Double(variance) + eps).squareRoot())
    }

    /// Test forward with the given statistics.
    public static func testForward(_ l: Layout, x: UnsafePointer<Float>, beta: UnsafePointer<Float>?,
                                   gamma: UnsafePointer<Float>?, mean: UnsafePointer<Float>,
                                   variance: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, eps: Double) {
        Threads.items(l.channels, workPerItem: l.perChannel,
                      TestForwardChannels(l: l, x: x, beta: beta, gamma: gamma, mean: mean, variance: variance, y: y,
                                          eps: eps))
    }

    /// The ReLU and residual Add2 a fused training backward (`FusedNormalization`) takes in: the ReLU's output
    /// `y`, whose mask `y > 0` applies to dy, and the residual's gradient, written or added to in the pass
    /// that gathers BN's sums.
    public struct ReLUAfter {
        let y: UnsafePointer<Float>, dResidual: UnsafeMutablePointer<Float>?, accumulateResidual: Bool
        public init(y: UnsafePointer<Float>, dResidual: UnsafeMutablePointer<Float>?, accumulateResidual: Bool) {
            self.y = y
            self.dResidual = dResidual
            self.accumulateResidual = accumulateResidual
        }
    }

    /// Training backward. The batch statistics are recomputed from x. `dMean`/`dVar` are the gradients of the
    /// `output_stat` outputs (batch mean and biased variance), which flow to x as well.
    /// `sums` is scratch of `2 * C` floats: per channel `sum(dy)` and `sum(dy * xhat)`, written to dbeta/dgamma
    /// after every dx is complete (x and a parameter may share a gradient buffer). With `relu`, dy is the
    /// gradient of `relu(bn(x) (+ r))` and the ReLU's and Add2's backward happen on the way, with the bits of the
    /// three separate steps.
    public static func trainingBackward(_ l: Layout, x: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
                                        dy: UnsafePointer<Float>, dMean: UnsafePointer<Float>?, dVar: UnsafePointer<Float>?,
                                        dx: UnsafeMutablePointer<Float>?, accumulateX: Bool,
                                        dBeta: UnsafeMutablePointer<Float>?, accumulateBeta: Bool,
                                        dGamma: UnsafeMutablePointer<Float>?, accumulateGamma: Bool,
                                        eps: Double, sums: UnsafeMutablePointer<Float>, relu: ReLUAfter? = nil) {
        let mInt = l.perChannel
        if let relu {
            let masked = MaskedGradient(y: relu.y, dy: dy, store: relu.dResidual, accumulate: relu.accumulateResidual)
            Threads.items(l.channels, workPerItem: 5 * mInt,
                          TrainingBackwardChannels(l: l, x: x, gamma: gamma, gradient: masked, dMean: dMean, dVar: dVar,
                                                   dx: dx, accumulateX: accumulateX, m: Double(mInt), eps: eps, sums: sums))
        } else {
            Threads.items(l.channels, workPerItem: 4 * mInt,
                          TrainingBackwardChannels(l: l, x: x, gamma: gamma, gradient: PlainGradient(dy: dy), dMean: dMean,
                                                   dVar: dVar, dx: dx, accumulateX: accumulateX, m: Double(mInt), eps: eps,
                                                   sums: sums))
        }
        storeParameterGrads(l.channels, sums, dBeta, accumulateBeta, dGamma, accumulateGamma)
    }

    /// Test backward: `dx = dy * gamma / sqrt(var + eps)`; statistics get no gradient.
    public static func testBackward(_ l: Layout, x: UnsafePointer<Float>?, gamma: UnsafePointer<Float>?,
                                    mean: UnsafePointer<Float>, variance: UnsafePointer<Float>,
                                    dy: UnsafePointer<Float>,
                                    dx: UnsafeMutablePointer<Float>?, accumulateX: Bool,
                                    dBeta: UnsafeMutablePointer<Float>?, accumulateBeta: Bool,
                                    dGamma: UnsafeMutablePointer<Float>?, accumulateGamma: Bool,
                                    eps: Double, sums: UnsafeMutablePointer<Float>) {
        let wantSums = dBeta != nil || dGamma != nil
        Threads.items(l.channels, workPerItem: 2 * l.perChannel,
                      TestBackwardChannels(l: l, x: x, gamma: gamma, mean: mean, variance: variance, dy: dy, dx: dx,
                                           accumulateX: accumulateX, wantSums: wantSums, eps: eps, sums: sums))
        storeParameterGrads(l.channels, sums, dBeta, accumulateBeta, dGamma, accumulateGamma)
    }

    @inline(__always)
    static func storeParameterGrads(_ c: Int, _ sums: UnsafeMutablePointer<Float>,
                                    _ dBeta: UnsafeMutablePointer<Float>?, _ accB: Bool,
                                    _ dGamma: UnsafeMutablePointer<Float>?, _ accG: Bool) {
        if let dBeta {
            for i in 0..<c { dBeta[i] = (accB ? dBeta[i] : 0) + sums[i] }
        }
        if let dGamma {
            for i in 0..<c { dGamma[i] = (accG ? dGamma[i] : 0) + sums[c + i] }
        }
    }
}

/// Batch normalisation training forward, one channel per item.
struct TrainingForwardChannels: ParallelItem {
    let l: BatchNormKernels.Layout, x: UnsafePointer<Float>, beta: UnsafePointer<Float>?, gamma: UnsafePointer<Float>?
    let runningMean: UnsafeMutablePointer<Float>?, runningVar: UnsafeMutablePointer<Float>?
    let y: UnsafeMutablePointer<Float>, batchMean: UnsafeMutablePointer<Float>?
    let batchVar: UnsafeMutablePointer<Float>?, decay: Float, eps: Double, unbias: Double
    let residual: UnsafePointer<Float>?, relu: Bool
    @inline(__always) func callAsFunction(_ c: Int) {
        let (variance, mf, scale) = BatchNormKernels.batchNormalizer(l, c, x, gamma: gamma?[c], eps: eps)
        let b = beta?[c] ?? 0
        BatchNormKernels.runs(l, c) { o, n in
            BatchNormKernels.normalize(x + o, y + o, n, mean: mf, scale: scale, shift: b, residual: residual.map { $0 + o },
                                       relu: relu)
        }
        if let runningMean, let runningVar {
            runningMean[c] = decay * runningMean[c] + (1 - decay) * mf
            runningVar[c] = decay * runningVar[c] + (1 - decay) * Float(variance * unbias)
        }
        batchMean?[c] = mf
        batchVar?[c] = Float(variance)
    }
}

/// Batch normalisation test forward, one channel per item.
struct TestForwardChannels: ParallelItem {
    let l: BatchNormKernels.Layout, x: UnsafePointer<Float>, beta: UnsafePointer<Float>?, gamma: UnsafePointer<Float>?
    let mean: UnsafePointer<Float>, variance: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, eps: Double
    @inline(__always) func callAsFunction(_ c: Int) {
        let scale = BatchNormKernels.testScale(gamma: gamma?[c], variance: variance[c], eps: eps)
        let b = beta?[c] ?? 0, mf = mean[c]
        BatchNormKernels.runs(l, c) { o, n in
            BatchNormKernels.normalize(x + o, y + o, n, mean: mf, scale: scale, shift: b)
        }
    }
}

/// Batch normalisation training backward, one channel per item, reading the output gradient from `gradient`.
struct TrainingBackwardChannels<G: GradientSource>: ParallelItem {
    let l: BatchNormKernels.Layout, x: UnsafePointer<Float>, gamma: UnsafePointer<Float>?, gradient: G
    let dMean: UnsafePointer<Float>?, dVar: UnsafePointer<Float>?, dx: UnsafeMutablePointer<Float>?, accumulateX: Bool
    let m: Double, eps: Double, sums: UnsafeMutablePointer<Float>
    @inline(__always) func callAsFunction(_ c: Int) {
        let k = BatchNormKernels.pivot(l, c, x)
        var sx = 0.0, sxx = 0.0, sdy = 0.0, sdyx = 0.0
        BatchNormKernels.runs(l, c) { o, n in
            let (a, b, g, h) = BatchNormKernels.backwardSums(x + o, gradient.advanced(by: o), n, pivot: k)
            sx += a; sxx += b; sdy += g; sdyx += h
        }
        let shifted = sx / m
        let mean = k + shifted
        let variance = max(sxx / m - shifted * shifted, 0)
        let invStd = 1 / (variance + eps).squareRoot()
        let mf = Float(mean)
        sdyx = (sdyx - shifted * sdy) * invStd // sum(dy * xhat), from sum(dy * (x - k))
        sums[c] = Float(sdy)
        sums[l.channels + c] = Float(sdyx)
        guard let dx else { return }
        let g = Double(gamma?[c] ?? 1)
        let a = g * invStd
        // dx = a*(dy - mean(dy) - xhat*mean(dy*xhat)) + dVar*2(x-mu)/M + dMean/M
        let coefX = -a * invStd * sdyx / m + 2 * Double(dVar?[c] ?? 0) / m
        let constant = -a * sdy / m + Double(dMean?[c] ?? 0) / m
        let af = Float(a), bf = Float(coefX), cf = Float(constant)
        BatchNormKernels.runs(l, c) { o, n in
            BatchNormKernels.gradient(gradient.advanced(by: o), x + o, dx + o, n, a: af, b: bf, c: cf, mean: mf, accumulate: accumulateX)
        }
    }
}

/// Where BN's training backward reads its output gradient from, four or eight floats at a time.
protocol GradientSource {
    /// Floats i..<i+4; `store`: also hand them on (the first pass of a fused backward writes a residual's gradient).
    func four(_ i: Int, store: Bool) -> SIMD4<Float>
    func eight(_ i: Int) -> SIMD8<Float>
    func one(_ i: Int, store: Bool) -> Float
    /// The same source from element `offset` on.
    func advanced(by offset: Int) -> Self
}

/// dy as it is.
struct PlainGradient: GradientSource {
    let dy: UnsafePointer<Float>
    @inline(__always) func four(_ i: Int, store: Bool) -> SIMD4<Float> {
        UnsafeRawPointer(dy).loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)
    }
    @inline(__always) func eight(_ i: Int) -> SIMD8<Float> {
        UnsafeRawPointer(dy).loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
    }
    @inline(__always) func one(_ i: Int, store: Bool) -> Float { dy[i] }
    @inline(__always) func advanced(by offset: Int) -> PlainGradient { PlainGradient(dy: dy + offset) }
}

/// ReLU's backward on the fly, `y > 0 ? dy : 0` (ReLU's own test, so a NaN output passes no gradient), written to
/// or added to `store` (an Add2's other operand's gradient) when asked.
struct MaskedGradient: GradientSource {
    let y: UnsafePointer<Float>, dy: UnsafePointer<Float>, store: UnsafeMutablePointer<Float>?, accumulate: Bool
    @inline(__always) func four(_ i: Int, store write: Bool) -> SIMD4<Float> {
        typealias V = SIMD4<Float>
        let yv = UnsafeRawPointer(y).loadUnaligned(fromByteOffset: i * 4, as: V.self)
        var g = UnsafeRawPointer(dy).loadUnaligned(fromByteOffset: i * 4, as: V.self)
        g.replace(with: 0, where: .!(yv .> 0))
        if write, let store {
            let r = UnsafeMutableRawPointer(store)
            r.storeBytes(of: accumulate ? r.loadUnaligned(fromByteOffset: i * 4, as: V.self) + g : g, toByteOffset: i * 4,
                         as: V.self)
        }
        return g
    }
    @inline(__always) func eight(_ i: Int) -> SIMD8<Float> {
        typealias V = SIMD8<Float>
        let yv = UnsafeRawPointer(y).loadUnaligned(fromByteOffset: i * 4, as: V.self)
        var g = UnsafeRawPointer(dy).loadUnaligned(fromByteOffset: i * 4, as: V.self)
        g.replace(with: 0, where: .!(yv .> 0))
        return g
    }
    @inline(__always) func one(_ i: Int, store write: Bool) -> Float {
        let g = y[i] > 0 ? dy[i] : 0
        if write, let store { store[i] = accumulate ? store[i] + g : g }
        return g
    }
    @inline(__always) func advanced(by offset: Int) -> MaskedGradient {
        MaskedGradient(y: y + offset, dy: dy + offset, store: store.map { $0 + offset }, accumulate: accumulate)
    }
}

/// Batch normalisation test backward, one channel per item.
struct TestBackwardChannels: ParallelItem {
    let l: BatchNormKernels.Layout, x: UnsafePointer<Float>?, gamma: UnsafePointer<Float>?, mean: UnsafePointer<Float>
    let variance: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, accumulateX: Bool
    let wantSums: Bool, eps: Double, sums: UnsafeMutablePointer<Float>
    @inline(__always) func callAsFunction(_ c: Int) {
        let invStd = 1 / (Double(variance[c]) + eps).squareRoot()
        if wantSums, let x {
            let mu = Double(mean[c])
            var sdy = 0.0, sdyx = 0.0
            BatchNormKernels.runs(l, c) { o, n in
                let (a, b) = BatchNormKernels.gradientSums(dy + o, x + o, n, mu)
                sdy += a
                sdyx += b
            }
            sums[c] = Float(sdy)
            sums[l.channels + c] = Float(sdyx * invStd)
        }
        guard let dx else { return }
        let af = Float(Double(gamma?[c] ?? 1) * invStd)
        BatchNormKernels.runs(l, c) { o, n in
            BatchNormKernels.scaled(dy + o, dx + o, n, a: af, accumulate: accumulateX)
        }
    }
}
