import Foundation

/// Batch-normalisation loops over a tensor viewed as `(outer, C, inner)` with statistics per channel.
///
/// Statistics are accumulated in Double (two passes: mean, then the mean squared deviation), which is at least
/// as accurate as nnabla's float `E[x^2] - E[x]^2`. Channels are independent and split over the threads.
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
    static func runs(_ l: Layout, _ c: Int, _ body: (Int, Int) -> Void) {
        let step = l.channels * l.inner
        var base = c * l.inner
        for _ in 0..<l.outer {
            body(base, l.inner)
            base += step
        }
    }

    /// Sum of `n` floats in Double, with four accumulators (independent dependency chains).
    @inline(__always)
    static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
        var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
        var i = 0
        while i + 4 <= n {
            a0 += Double(p[i]); a1 += Double(p[i + 1]); a2 += Double(p[i + 2]); a3 += Double(p[i + 3])
            i += 4
        }
        while i < n { a0 += Double(p[i]); i += 1 }
        return (a0 + a1) + (a2 + a3)
    }

    /// Sum of `(p[i] - mean)^2` in Double.
    @inline(__always)
    static func squaredDeviations(_ p: UnsafePointer<Float>, _ n: Int, _ mean: Double) -> Double {
        var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
        var i = 0
        while i + 4 <= n {
            let d0 = Double(p[i]) - mean, d1 = Double(p[i + 1]) - mean
            let d2 = Double(p[i + 2]) - mean, d3 = Double(p[i + 3]) - mean
            a0 += d0 * d0; a1 += d1 * d1; a2 += d2 * d2; a3 += d3 * d3
            i += 4
        }
        while i < n { let d = Double(p[i]) - mean; a0 += d * d; i += 1 }
        return (a0 + a1) + (a2 + a3)
    }

    /// `(sum(dy), sum(dy * (x - mean)))` in Double.
    @inline(__always)
    static func gradientSums(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int,
                             _ mean: Double) -> (Double, Double) {
        var s0 = 0.0, s1 = 0.0, t0 = 0.0, t1 = 0.0
        var i = 0
        while i + 2 <= n {
            let g0 = Double(dy[i]), g1 = Double(dy[i + 1])
            s0 += g0; s1 += g1
            t0 += g0 * (Double(x[i]) - mean); t1 += g1 * (Double(x[i + 1]) - mean)
            i += 2
        }
        if i < n { let g = Double(dy[i]); s0 += g; t0 += g * (Double(x[i]) - mean) }
        return (s0 + s1, t0 + t1)
    }

    /// Biased batch mean and variance of channel `c` (two passes).
    @inline(__always)
    static func moments(_ l: Layout, _ c: Int, _ x: UnsafePointer<Float>) -> (mean: Double, variance: Double) {
        var s = 0.0
        runs(l, c) { o, n in s += sum(x + o, n) }
        let m = Double(l.perChannel)
        let mean = s / m
        var v = 0.0
        runs(l, c) { o, n in v += squaredDeviations(x + o, n, mean) }
        return (mean, v / m)
    }

    /// Training forward: normalises with the batch statistics and updates the running ones in place
    /// (`var` with the unbiased batch variance). Optionally writes the batch mean and biased variance.
    public static func trainingForward(_ l: Layout, x: UnsafePointer<Float>, beta: UnsafePointer<Float>?,
                                       gamma: UnsafePointer<Float>?, runningMean: UnsafeMutablePointer<Float>,
                                       runningVar: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>,
                                       batchMean: UnsafeMutablePointer<Float>?, batchVar: UnsafeMutablePointer<Float>?,
                                       decay: Float, eps: Double) {
        let m = l.perChannel
        let unbias = Double(m) / Double(m - 1)
        Threads.items(l.channels, workPerItem: 3 * m) { c in
            let (mean, variance) = moments(l, c, x)
            let scale = Float(Double(gamma?[c] ?? 1) / (variance + eps).squareRoot())
            let b = beta?[c] ?? 0
            let mf = Float(mean)
            runs(l, c) { o, n in
                for i in 0..<n { y[o + i] = (x[o + i] - mf) * scale + b }
            }
            runningMean[c] = decay * runningMean[c] + (1 - decay) * mf
            runningVar[c] = decay * runningVar[c] + (1 - decay) * Float(variance * unbias)
            batchMean?[c] = mf
            batchVar?[c] = Float(variance)
        }
    }

    /// The factor of test mode, `gamma / sqrt(var + eps)`: one definition for the BN kernel and fused epilogues.
    @inline(__always)
    static func testScale(gamma: Float?, variance: Float, eps: Double) -> Float {
        Float(Double(gamma ?? 1) / (Double(variance) + eps).squareRoot())
    }

    /// Test forward with the given statistics.
    public static func testForward(_ l: Layout, x: UnsafePointer<Float>, beta: UnsafePointer<Float>?,
                                   gamma: UnsafePointer<Float>?, mean: UnsafePointer<Float>,
                                   variance: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, eps: Double) {
        Threads.items(l.channels, workPerItem: l.perChannel) { c in
            let scale = testScale(gamma: gamma?[c], variance: variance[c], eps: eps)
            let b = beta?[c] ?? 0, mf = mean[c]
            runs(l, c) { o, n in
                for i in 0..<n { y[o + i] = (x[o + i] - mf) * scale + b }
            }
        }
    }

    /// Training backward. The batch statistics are recomputed from x. `dMean`/`dVar` are the gradients of the
    /// `output_stat` outputs (batch mean and biased variance), which flow to x as well.
    /// `sums` is scratch of `2 * C` floats: per channel `sum(dy)` and `sum(dy * xhat)`, written to dbeta/dgamma
    /// after every dx is complete (x and a parameter may share a gradient buffer).
    public static func trainingBackward(_ l: Layout, x: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
                                        dy: UnsafePointer<Float>, dMean: UnsafePointer<Float>?, dVar: UnsafePointer<Float>?,
                                        dx: UnsafeMutablePointer<Float>?, accumulateX: Bool,
                                        dBeta: UnsafeMutablePointer<Float>?, accumulateBeta: Bool,
                                        dGamma: UnsafeMutablePointer<Float>?, accumulateGamma: Bool,
                                        eps: Double, sums: UnsafeMutablePointer<Float>) {
        let mInt = l.perChannel
        let m = Double(mInt)
        Threads.items(l.channels, workPerItem: 4 * mInt) { c in
            let (mean, variance) = moments(l, c, x)
            let invStd = 1 / (variance + eps).squareRoot()
            let mf = Float(mean)
            var sdy = 0.0, sdyx = 0.0
            runs(l, c) { o, n in
                let (a, b) = gradientSums(dy + o, x + o, n, mean)
                sdy += a
                sdyx += b
            }
            sdyx *= invStd // sum(dy * xhat)
            sums[c] = Float(sdy)
            sums[l.channels + c] = Float(sdyx)
            guard let dx else { return }
            let g = Double(gamma?[c] ?? 1)
            let a = g * invStd
            // dx = a*(dy - mean(dy) - xhat*mean(dy*xhat)) + dVar*2(x-mu)/M + dMean/M
            let coefX = -a * invStd * sdyx / m + 2 * Double(dVar?[c] ?? 0) / m
            let constant = -a * sdy / m + Double(dMean?[c] ?? 0) / m
            let af = Float(a), bf = Float(coefX), cf = Float(constant)
            runs(l, c) { o, n in
                if accumulateX {
                    for i in 0..<n { dx[o + i] += af * dy[o + i] + bf * (x[o + i] - mf) + cf }
                } else {
                    for i in 0..<n { dx[o + i] = af * dy[o + i] + bf * (x[o + i] - mf) + cf }
                }
            }
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
        Threads.items(l.channels, workPerItem: 2 * l.perChannel) { c in
            let invStd = 1 / (Double(variance[c]) + eps).squareRoot()
            if wantSums, let x {
                let mu = Double(mean[c])
                var sdy = 0.0, sdyx = 0.0
                runs(l, c) { o, n in
                    let (a, b) = gradientSums(dy + o, x + o, n, mu)
                    sdy += a
                    sdyx += b
                }
                sums[c] = Float(sdy)
                sums[l.channels + c] = Float(sdyx * invStd)
            }
            guard let dx else { return }
            let af = Float(Double(gamma?[c] ?? 1) * invStd)
            runs(l, c) { o, n in
                if accumulateX {
                    for i in 0..<n { dx[o + i] += af * dy[o + i] }
                } else {
                    for i in 0..<n { dx[o + i] = af * dy[o + i] }
                }
            }
        }
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
