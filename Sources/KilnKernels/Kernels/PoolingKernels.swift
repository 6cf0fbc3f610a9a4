import KilnCore

/// Pooling loops over the last one to three dims of a channels-first tensor (nnabla's CPU pooling rules).
///
/// Every pooled tensor is viewed as `maps` independent maps of `(D, H, W)` (missing leading spatial dims have
/// size 1, kernel 1, stride 1, pad 0). The window of each output index is computed once when the kernel is
/// built (`PoolWindows`): the loops only read those tables.
public struct PoolWindows {
    /// Product of the dims that are not pooled.
    public let maps: Int
    public let inD: Int, inH: Int, inW: Int
    public let outD: Int, outH: Int, outW: Int
    /// Clipped window `[start, end)` per output index, per spatial axis.
    let dS: [Int], dE: [Int], hS: [Int], hE: [Int], wS: [Int], wE: [Int]
    /// Average pooling divisor per output position of one map (empty for max pooling).
    let divisor: [Float]
    /// Every window is exactly the 2x2 block at (2*oh, 2*ow) of its plane (the common 2x2, stride 2,
    /// unpadded pooling): the loops can skip the tables.
    let plain2x2: Bool

    public var inMap: Int { inD * inH * inW }
    public var outMap: Int { outD * outH * outW }

    /// nnabla's output size of one pooled axis: `floor((L + 2p - k)/s) + 1` with ignore_border, else
    /// `floor((L + p - 1)/s) + 1` (one p only). Nil when the kernel does not fit (ignore_border).
    public static func outputSize(_ l: Int, kernel k: Int, stride s: Int, pad p: Int, ignoreBorder: Bool) -> Int? {
        if ignoreBorder {
            guard l + 2 * p >= k else { return nil }
            return (l + 2 * p - k) / s + 1
        }
        return (l + p - 1) / s + 1
    }

    /// Tables for an input of shape `inShape` pooled over its last `kernel.count` dims into `outShape`.
    /// Assumes the arguments were validated (kernel/stride >= 1, 0 <= pad < kernel, matching output sizes).
    public init(inShape: [Int], outShape: [Int], kernel: [Int], stride: [Int], pad: [Int],
                averageDivisor includingPad: Bool?) {
        let nk = kernel.count
        let lead = 3 - nk
        func spatial(_ s: [Int]) -> [Int] {
            [Int](repeating: 1, count: lead) + Array(s[(s.count - nk)...])
        }
        let li = spatial(inShape), lo = spatial(outShape)
        let k = [Int](repeating: 1, count: lead) + kernel
        let st = [Int](repeating: 1, count: lead) + stride
        let pd = [Int](repeating: 0, count: lead) + pad
        maps = Shapes.product(inShape, 0..<(inShape.count - nk))
        (inD, inH, inW) = (li[0], li[1], li[2])
        (outD, outH, outW) = (lo[0], lo[1], lo[2])
        var starts: [[Int]] = [], ends: [[Int]] = [], raw: [[Int]] = [], real: [[Int]] = []
        for a in 0..<3 {
            var s = [Int](), e = [Int](), r = [Int](), c = [Int]()
            for o in 0..<lo[a] {
                let start = o * st[a] - pd[a]
                let end = min(start + k[a], li[a] + pd[a])
                let cs = max(start, 0), ce = min(end, li[a])
                s.append(cs); e.append(ce); r.append(end - start); c.append(ce - cs)
            }
            starts.append(s); ends.append(e); raw.append(r); real.append(c)
        }
        (dS, dE, hS, hE, wS, wE) = (starts[0], ends[0], starts[1], ends[1], starts[2], ends[2])
        let depthOne: Bool = lo[0] == li[0] && (0..<lo[0]).allSatisfy { (o: Int) -> Bool in
            starts[0][o] == o && ends[0][o] == o + 1
        }
        let rows: Bool = (0..<lo[1]).allSatisfy { (o: Int) -> Bool in starts[1][o] == 2 * o && ends[1][o] == 2 * o + 2 }
        let cols: Bool = (0..<lo[2]).allSatisfy { (o: Int) -> Bool in starts[2][o] == 2 * o && ends[2][o] == 2 * o + 2 }
        plain2x2 = depthOne && rows && cols
        if let includingPad {
            let size = includingPad ? raw : real
            var div = [Float]()
            div.reserveCapacity(lo[0] * lo[1] * lo[2])
            for od in 0..<lo[0] {
                for oh in 0..<lo[1] {
                    for ow in 0..<lo[2] { div.append(Float(size[0][od] * size[1][oh] * size[2][ow])) }
                }
            }
            divisor = div
        } else {
            divisor = []
        }
    }
}

/// The pooling of one plane (one sample's output map of a convolution that pools each plane as soon as it is
/// finished, `ConvEpilogue.pool`). It runs the per-plane loops of `PoolingKernels.maxForward` and `averageForward`
/// on that plane, so its values are theirs, bit for bit.
package struct PlanePooling {
    let windows: PoolWindows
    let average: Bool
    /// Floats of one pooled plane.
    package var outPlane: Int { windows.outMap }

    /// `windows` must pool the whole plane as one map (2-D pooling of a `[batch, maps, h, w]` value).
    package init(windows: PoolWindows, average: Bool) {
        self.windows = windows
        self.average = average
    }

    @inline(__always)
    func callAsFunction(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let g = windows
        if average {
            AveragePoolMaps(g: g, x: x, y: y)(0)
        } else if g.plain2x2 {
            MaxPool2x2Planes(x: x, y: y, inW: g.inW, inHW: g.inH * g.inW, outH: g.outH, outW: g.outW)(0)
        } else {
            MaxPoolMaps(g: g, x: x, y: y)(0)
        }
    }
}

public enum PoolingKernels {
    /// `y = sum(window) / divisor`, summing in row-major window order as nnabla does.
    public static func averageForward(_ g: PoolWindows, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        Threads.items(g.maps, workPerItem: g.inMap, AveragePoolMaps(g: g, x: x, y: y))
    }

    /// `dx[window] += dy / divisor`, outputs in order (dx zeroed first unless accumulating).
    public static func averageBackward(_ g: PoolWindows, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                       accumulate: Bool) {
        Threads.items(g.maps, workPerItem: g.inMap,
                      AveragePoolMapsBackward(g: g, dy: dy, dx: dx, accumulate: accumulate))
    }

    /// Offset (within one map) of the first maximum of the window of output (od, oh, ow); padded cells never
    /// take part.
    @inline(__always)
    static func argmax(_ g: PoolWindows, _ xm: UnsafePointer<Float>, _ od: Int, _ oh: Int, _ ow: Int) -> Int {
        let hw = g.inH * g.inW, inW = g.inW
        let d0 = g.dS[od], d1 = g.dE[od], h0 = g.hS[oh], h1 = g.hE[oh], w0 = g.wS[ow], w1 = g.wE[ow]
        var best = d0 * hw + h0 * inW + w0
        var bestValue = xm[best]
        for d in d0..<d1 {
            for h in h0..<h1 {
                let base = d * hw + h * inW
                for w in w0..<w1 where xm[base + w] > bestValue {
                    bestValue = xm[base + w]
                    best = base + w
                }
            }
        }
        return best
    }

    public static func maxForward(_ g: PoolWindows, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        if g.plain2x2 {
            let planes = g.maps * g.outD, inW = g.inW, inHW = g.inH * g.inW, outH = g.outH, outW = g.outW
            Threads.items(planes, workPerItem: inHW,
                          MaxPool2x2Planes(x: x, y: y, inW: inW, inHW: inHW, outH: outH, outW: outW))
            return
        }
        Threads.items(g.maps, workPerItem: g.inMap, MaxPoolMaps(g: g, x: x, y: y))
    }

    /// Max pooling of 8-bit codes (quantized plans): the codes of a grid order as the values they stand for, so
    /// the maximum code stands for the maximum value.
    public static func maxForward(_ g: PoolWindows, codes x: UnsafeRawPointer, signed: Bool, into y: UnsafeMutableRawPointer) {
        if g.plain2x2 {
            let planes = g.maps * g.outD
            if signed {
                Threads.items(planes, workPerItem: g.inH * g.inW, MaxPool2x2Codes(g: g, x: x.assumingMemoryBound(to: Int8.self),
                                                                                 y: y.assumingMemoryBound(to: Int8.self)))
            } else {
                Threads.items(planes, workPerItem: g.inH * g.inW, MaxPool2x2Codes(g: g, x: x.assumingMemoryBound(to: UInt8.self),
                                                                                 y: y.assumingMemoryBound(to: UInt8.self)))
            }
            return
        }
        if signed {
            Threads.items(g.maps, workPerItem: g.inMap, MaxPoolMaps(g: g, x: x.assumingMemoryBound(to: Int8.self),
                                                                    y: y.assumingMemoryBound(to: Int8.self)))
        } else {
            Threads.items(g.maps, workPerItem: g.inMap, MaxPoolMaps(g: g, x: x.assumingMemoryBound(to: UInt8.self),
                                                                    y: y.assumingMemoryBound(to: UInt8.self)))
        }
    }

    /// Routes each output gradient to the first maximum of its window, recomputed from `x`.
    public static func maxBackward(_ g: PoolWindows, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                   _ dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if g.plain2x2 {
            let planes = g.maps * g.outD, inW = g.inW, inHW = g.inH * g.inW, outH = g.outH, outW = g.outW
            // When the windows tile the plane, every input element is written once: no zero fill first.
            let assign = !accumulate && g.inH == 2 * outH && inW == 2 * outW
            Threads.items(planes, workPerItem: inHW,
                          MaxPool2x2PlanesBackward(x: x, dy: dy, dx: dx, inW: inW, inHW: inHW, outH: outH, outW: outW,
                                                   accumulate: accumulate, assign: assign))
            return
        }
        Threads.items(g.maps, workPerItem: g.inMap,
                      MaxPoolMapsBackward(g: g, x: x, dy: dy, dx: dx, accumulate: accumulate))
    }

    /// Eight 2x2 windows at a time of one row pair: the row pair is loaded as 16-float vectors and split into
    /// even and odd lanes (the four corners of eight windows); masks pick the first maximum in scan order
    /// (nnabla's strict `>`), and the gradient goes there, zeros elsewhere when `assign`. Returns how many
    /// windows it handled (a multiple of 8, stopping where a load would pass the row pair's end).
    @inline(__always)
    static func maxBackward2x2Vectors(_ x0: UnsafePointer<Float>, inW: Int, _ dyRow: UnsafePointer<Float>, outW: Int,
                                      _ d0: UnsafeMutablePointer<Float>, assign: Bool) -> Int {
        typealias V = SIMD8<Float>
        typealias W = SIMD16<Float>
        let r0 = UnsafeRawPointer(x0), r1 = UnsafeRawPointer(x0 + inW)
        let w0 = UnsafeMutableRawPointer(d0), w1 = UnsafeMutableRawPointer(d0 + inW)
        let g = UnsafeRawPointer(dyRow)
        let zero = V()
        var ow = 0
        while ow + 8 <= outW {
            let top = r0.loadUnaligned(fromByteOffset: ow * 8, as: W.self)
            let bottom = r1.loadUnaligned(fromByteOffset: ow * 8, as: W.self)
            let a = top.evenHalf, b = top.oddHalf, c = bottom.evenHalf, d = bottom.oddHalf
            let mb = b .> a
            var best = a.replacing(with: b, where: mb)
            let mc = c .> best
            best = best.replacing(with: c, where: mc)
            let md = d .> best
            let grad = g.loadUnaligned(fromByteOffset: ow * 4, as: V.self)
            var upper = W(), lower = W()
            upper.evenHalf = zero.replacing(with: grad, where: .!(mb .| mc .| md))
            upper.oddHalf = zero.replacing(with: grad, where: mb .& .!mc .& .!md)
            lower.evenHalf = zero.replacing(with: grad, where: mc .& .!md)
            lower.oddHalf = zero.replacing(with: grad, where: md)
            if !assign {
                upper += w0.loadUnaligned(fromByteOffset: ow * 8, as: W.self)
                lower += w1.loadUnaligned(fromByteOffset: ow * 8, as: W.self)
            }
            w0.storeBytes(of: upper, toByteOffset: ow * 8, as: W.self)
            w1.storeBytes(of: lower, toByteOffset: ow * 8, as: W.self)
            ow += 8
        }
        return ow
    }

    /// Mean of each (n, c) over everything after axis 1, summed in order then divided (as nnabla).
    public static func globalAverageForward(maps: Int, size: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let div = Float(size)
        Threads.items(maps, workPerItem: size, GlobalAveragePoolMaps(x: x, y: y, size: size, div: div))
    }

    public static func globalAverageBackward(maps: Int, size: Int, _ dy: UnsafePointer<Float>,
                                             _ dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let div = Float(size)
        Threads.items(maps, workPerItem: size,
                      GlobalAveragePoolMapsBackward(dy: dy, dx: dx, size: size, div: div, accumulate: accumulate))
    }
}

/// Average pooling forward, one map per item.
struct AveragePoolMaps: ParallelItem {
    let g: PoolWindows, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    @inline(__always) func callAsFunction(_ m: Int) {
        let xm = x + m * g.inMap, ym = y + m * g.outMap
        let hw = g.inH * g.inW, inW = g.inW
        var k = 0
        for od in 0..<g.outD {
            let d0 = g.dS[od], d1 = g.dE[od]
            for oh in 0..<g.outH {
                let h0 = g.hS[oh], h1 = g.hE[oh]
                for ow in 0..<g.outW {
                    let w0 = g.wS[ow], w1 = g.wE[ow]
                    var sum: Float = 0
                    for d in d0..<d1 {
                        for h in h0..<h1 {
                            let row = xm + d * hw + h * inW
                            for w in w0..<w1 { sum += row[w] }
                        }
                    }
                    ym[k] = sum / g.divisor[k]
                    k += 1
                }
            }
        }
    }
}

/// Average pooling backward, one map per item.
struct AveragePoolMapsBackward: ParallelItem {
    let g: PoolWindows, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, accumulate: Bool
    @inline(__always) func callAsFunction(_ m: Int) {
        let dxm = dx + m * g.inMap, dym = dy + m * g.outMap
        if !accumulate { dxm.update(repeating: 0, count: g.inMap) }
        let hw = g.inH * g.inW, inW = g.inW
        var k = 0
        for od in 0..<g.outD {
            let d0 = g.dS[od], d1 = g.dE[od]
            for oh in 0..<g.outH {
                let h0 = g.hS[oh], h1 = g.hE[oh]
                for ow in 0..<g.outW {
                    let w0 = g.wS[ow], w1 = g.wE[ow]
                    let v = dym[k] / g.divisor[k]
                    for d in d0..<d1 {
                        for h in h0..<h1 {
                            let row = dxm + d * hw + h * inW
                            for w in w0..<w1 { row[w] += v }
                        }
                    }
                    k += 1
                }
            }
        }
    }
}

/// 2x2 stride-2 max pooling forward, one plane per item.
struct MaxPool2x2Planes: ParallelItem {
    /// Lane by lane, the first maximum of the window's corners in scan order (nnabla's strict `>`). Concrete types:
    /// a generic version over `SIMD` ran lane by lane, and LeNet's inference took five times as long.
    @inline(__always)
    static func firstMaximum(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>, _ d: SIMD8<Float>) -> SIMD8<Float> {
        let ab = a.replacing(with: b, where: b .> a), abc = ab.replacing(with: c, where: c .> ab)
        return abc.replacing(with: d, where: d .> abc)
    }

    @inline(__always)
    static func firstMaximum(_ a: SIMD4<Float>, _ b: SIMD4<Float>, _ c: SIMD4<Float>, _ d: SIMD4<Float>) -> SIMD4<Float> {
        let ab = a.replacing(with: b, where: b .> a), abc = ab.replacing(with: c, where: c .> ab)
        return abc.replacing(with: d, where: d .> abc)
    }

    let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, inW: Int, inHW: Int, outH: Int, outW: Int
    @inline(__always) func callAsFunction(_ p: Int) {
        let xp = x + p * inHW, yp = y + p * outH * outW
        // Eight (or, for rows of 4 to 7 windows such as LeNet's second pooling, four) windows at a time from the row
        // pair's even and odd lanes, the same comparisons lane by lane: a plane a convolution just wrote is in cache,
        // where the scalar chain of compares was the cost. A last partial group reruns the final windows, writing the
        // same values again.
        let width = outW >= 8 ? 8 : outW >= 4 ? 4 : 0
        for oh in 0..<outH {
            let r0 = xp + 2 * oh * inW, r1 = r0 + inW, yr = yp + oh * outW
            if width > 0 {
                let t = UnsafeRawPointer(r0), u = UnsafeRawPointer(r1), out = UnsafeMutableRawPointer(yr)
                var ow = 0
                while true {
                    let at = min(ow, outW - width)
                    if width == 8 {
                        let a = t.loadUnaligned(fromByteOffset: at * 8, as: SIMD16<Float>.self)
                        let b = u.loadUnaligned(fromByteOffset: at * 8, as: SIMD16<Float>.self)
                        out.storeBytes(of: Self.firstMaximum(a.evenHalf, a.oddHalf, b.evenHalf, b.oddHalf),
                                       toByteOffset: at * 4, as: SIMD8<Float>.self)
                    } else {
                        let a = t.loadUnaligned(fromByteOffset: at * 8, as: SIMD8<Float>.self)
                        let b = u.loadUnaligned(fromByteOffset: at * 8, as: SIMD8<Float>.self)
                        out.storeBytes(of: Self.firstMaximum(a.evenHalf, a.oddHalf, b.evenHalf, b.oddHalf),
                                       toByteOffset: at * 4, as: SIMD4<Float>.self)
                    }
                    if at + width >= outW { break }
                    ow += width
                }
                continue
            }
            for ow in 0..<outW {
                // The same comparisons in the same order as the general loop (first maximum wins).
                var best = r0[2 * ow]
                if r0[2 * ow + 1] > best { best = r0[2 * ow + 1] }
                if r1[2 * ow] > best { best = r1[2 * ow] }
                if r1[2 * ow + 1] > best { best = r1[2 * ow + 1] }
                yr[ow] = best
            }
        }
    }
}

/// Max pooling forward, one map per item.
/// 2x2 stride-2 max pooling of codes, one plane per item: a plain loop, no window tables.
struct MaxPool2x2Codes<T: Comparable>: ParallelItem {
    let g: PoolWindows, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>
    @inline(__always) func callAsFunction(_ plane: Int) {
        let inW = g.inW, outW = g.outW
        let xp = x + plane * g.inH * inW, yp = y + plane * g.outH * outW
        for oh in 0..<g.outH {
            let r0 = xp + 2 * oh * inW, r1 = r0 + inW, out = yp + oh * outW
            for ow in 0..<outW {
                out[ow] = max(max(r0[2 * ow], r0[2 * ow + 1]), max(r1[2 * ow], r1[2 * ow + 1]))
            }
        }
    }
}

struct MaxPoolMaps<T: Comparable>: ParallelItem {
    let g: PoolWindows, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>
    @inline(__always) func callAsFunction(_ m: Int) {
        let xm = x + m * g.inMap, ym = y + m * g.outMap
        let hw = g.inH * g.inW, inW = g.inW
        var k = 0
        // Value only (the first maximum has the maximum's value); padded cells never take part.
        for od in 0..<g.outD {
            let d0 = g.dS[od], d1 = g.dE[od]
            for oh in 0..<g.outH {
                let h0 = g.hS[oh], h1 = g.hE[oh]
                for ow in 0..<g.outW {
                    let w0 = g.wS[ow], w1 = g.wE[ow]
                    var best = xm[d0 * hw + h0 * inW + w0]
                    for d in d0..<d1 {
                        for h in h0..<h1 {
                            let row = xm + d * hw + h * inW
                            for w in w0..<w1 where row[w] > best { best = row[w] }
                        }
                    }
                    ym[k] = best
                    k += 1
                }
            }
        }
    }
}

/// 2x2 stride-2 max pooling backward, one plane per item.
struct MaxPool2x2PlanesBackward: ParallelItem {
    let x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, inW: Int, inHW: Int
    let outH: Int, outW: Int, accumulate: Bool, assign: Bool
    @inline(__always) func callAsFunction(_ p: Int) {
        let xp = x + p * inHW, dxp = dx + p * inHW, dyp = dy + p * outH * outW
        if !accumulate && !assign { dxp.update(repeating: 0, count: inHW) }
        for oh in 0..<outH {
            let base = 2 * oh * inW
            var done = PoolingKernels.maxBackward2x2Vectors(xp + base, inW: inW, dyp + oh * outW, outW: outW,
                                                            dxp + base, assign: assign)
            // The last eight windows again, overlapping ones done: assigning writes the same values twice, and the
            // scalar loop's dependent stores took most of LeNet's pooling backward (12-window rows).
            if assign && done < outW && outW >= 8 {
                let last = outW - 8
                done = last + PoolingKernels.maxBackward2x2Vectors(xp + base + 2 * last, inW: inW, dyp + oh * outW + last,
                                                                   outW: 8, dxp + base + 2 * last, assign: true)
            }
            for ow in done..<outW {
                let i0 = base + 2 * ow, i1 = i0 + 1, i2 = i0 + inW, i3 = i2 + 1
                var at = i0, best = xp[i0]
                if xp[i1] > best { best = xp[i1]; at = i1 }
                if xp[i2] > best { best = xp[i2]; at = i2 }
                if xp[i3] > best { at = i3 }
                if assign { dxp[i0] = 0; dxp[i1] = 0; dxp[i2] = 0; dxp[i3] = 0 }
                dxp[at] += dyp[oh * outW + ow]
            }
        }
    }
}

/// Max pooling backward, one map per item.
struct MaxPoolMapsBackward: ParallelItem {
    let g: PoolWindows, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>
    let accumulate: Bool
    @inline(__always) func callAsFunction(_ m: Int) {
        let xm = x + m * g.inMap, dxm = dx + m * g.inMap, dym = dy + m * g.outMap
        if !accumulate { dxm.update(repeating: 0, count: g.inMap) }
        var k = 0
        for od in 0..<g.outD {
            for oh in 0..<g.outH {
                for ow in 0..<g.outW {
                    dxm[PoolingKernels.argmax(g, xm, od, oh, ow)] += dym[k]
                    k += 1
                }
            }
        }
    }
}

/// Global average pooling forward, one map per item.
struct GlobalAveragePoolMaps: ParallelItem {
    let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, size: Int, div: Float
    @inline(__always) func callAsFunction(_ m: Int) {
        let xm = x + m * size
        var sum: Float = 0
        for i in 0..<size { sum += xm[i] }
        y[m] = sum / div
    }
}

/// Global average pooling backward, one map per item.
struct GlobalAveragePoolMapsBackward: ParallelItem {
    let dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, size: Int, div: Float, accumulate: Bool
    @inline(__always) func callAsFunction(_ m: Int) {
        let v = dy[m] / div
        let dxm = dx + m * size
        if accumulate {
            for i in 0..<size { dxm[i] += v }
        } else {
            dxm.update(repeating: v, count: size)
        }
    }
}
