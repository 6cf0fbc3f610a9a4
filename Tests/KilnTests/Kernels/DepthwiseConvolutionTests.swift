import CKilnKernels
import Testing
@testable import Kiln
@testable import KilnKernels

/// Depthwise 2-D convolutions run their own kernels (`DepthwiseConvolution`): forward, data gradient and weight
/// gradient through the Convolution function against a naive reference summed in Double, set and accumulated,
/// with bias, channel multipliers, strides 1 to 3, padding and dilation; the same bits on every kernel path and
/// for one thread or two; and Deconvolution with one channel per group, which runs the same kernels the other
/// way round.
@Suite(.serialized)
struct DepthwiseConvolutionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var batch: Int, channels: Int, multiplier = 1, image: [Int], kernel: [Int], stride = [1, 1], pad = [1, 1],
            dilation = [1, 1]
        var testDescription: String {
            "n\(batch) c\(channels)x\(multiplier) \(image) k\(kernel) s\(stride) p\(pad) d\(dilation)"
        }
    }

    static let cases: [Case] = [
        Case(batch: 2, channels: 3, image: [7, 9], kernel: [3, 3]),                               // edges only: 9 < 8 + 8
        Case(batch: 3, channels: 4, image: [8, 8], kernel: [3, 3], stride: [2, 2]),               // MobileNet's downsampling
        Case(batch: 2, channels: 2, multiplier: 2, image: [10, 13], kernel: [5, 5], stride: [2, 2], pad: [2, 2]),
        Case(batch: 2, channels: 3, image: [9, 9], kernel: [3, 3], stride: [3, 3], pad: [0, 0]),  // the scalar stride
        Case(batch: 1, channels: 2, image: [12, 11], kernel: [3, 3], pad: [2, 2], dilation: [2, 2]),
        Case(batch: 1, channels: 3, image: [20, 37], kernel: [3, 3], stride: [2, 2], pad: [2, 2], dilation: [2, 2]),
        Case(batch: 2, channels: 2, image: [9, 70], kernel: [3, 3]),                              // 32-wide lanes, 8-wide, rest
        Case(batch: 1, channels: 5, multiplier: 3, image: [6, 10], kernel: [3, 1], stride: [1, 2], pad: [1, 0]),
        Case(batch: 2, channels: 2, image: [17, 35], kernel: [3, 3], stride: [2, 2]),             // odd rows of 4
        Case(batch: 1, channels: 3, image: [5, 32], kernel: [3, 3]),                              // two full 16-wide blocks
    ]

    static func convolution(_ c: Case) -> Convolution {
        Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation, group: c.channels)
    }

    /// The geometry `DepthwiseConvolution` takes: each case must really take the depthwise kernels.
    @Test func everyCaseTakesTheDepthwiseKernels() throws {
        for c in Self.cases {
            let x = TensorType([c.batch, c.channels] + c.image, .float32)
            let w = TensorType([c.channels * c.multiplier, 1] + c.kernel, .float32)
            let g = try Self.convolution(c).geometry([x, w]).0
            #expect(DepthwiseConvolution(g) != nil, "\(c.testDescription)")
        }
        // A single input channel is an ordinary convolution (LeNet's first layer), and 1x1 stride 1 is a scale.
        let single = ConvGeometry(batch: 1, channels: 1, outmaps: 6, group: 1, image: [28, 28], col: [24, 24], kernel: [5, 5],
                                  pad: [0, 0], stride: [1, 1], dilation: [1, 1])
        #expect(DepthwiseConvolution(single) == nil)
        let scale = ConvGeometry(batch: 1, channels: 4, outmaps: 4, group: 4, image: [5, 5], col: [5, 5], kernel: [1, 1],
                                 pad: [0, 0], stride: [1, 1], dilation: [1, 1])
        #expect(DepthwiseConvolution(scale) == nil)
    }

    /// Forward (with bias), data and weight gradients in Double, straight from the definitions.
    static func reference(_ c: Case, x: [Float], w: [Float], b: [Float], dy: [Float], out: [Int])
        -> (y: [Float], dx: [Float], dw: [Float]) {
        let (h, wd) = (c.image[0], c.image[1]), (oh, ow) = (out[0], out[1]), (kh, kw) = (c.kernel[0], c.kernel[1])
        let maps = c.channels * c.multiplier
        var y = [Double](repeating: 0, count: c.batch * maps * oh * ow)
        var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: w.count)
        for n in 0..<c.batch {
            for m in 0..<maps {
                let ch = m / c.multiplier
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let yi = ((n * maps + m) * oh + oy) * ow + ox
                        var s = Double(b[m])
                        for i in 0..<kh {
                            for j in 0..<kw {
                                let iy = oy * c.stride[0] - c.pad[0] + i * c.dilation[0]
                                let ix = ox * c.stride[1] - c.pad[1] + j * c.dilation[1]
                                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                                let xi = ((n * c.channels + ch) * h + iy) * wd + ix, wi = (m * kh + i) * kw + j
                                s += Double(w[wi]) * Double(x[xi])
                                dx[xi] += Double(w[wi]) * Double(dy[yi])
                                dw[wi] += Double(dy[yi]) * Double(x[xi])
                            }
                        }
                        y[yi] = s
                    }
                }
            }
        }
        return (y.map { Float($0) }, dx.map { Float($0) }, dw.map { Float($0) })
    }

    /// Outputs of one run of every product (forward with bias; gradients set and accumulated onto `start`).
    static func run(_ c: Case, seed: UInt64) throws -> [[Float]] {
        let f = convolution(c)
        let x = Harness.random([c.batch, c.channels] + c.image, seed: seed)
        let w = Harness.random([c.channels * c.multiplier, 1] + c.kernel, seed: seed + 1)
        let b = Harness.random([c.channels * c.multiplier], seed: seed + 2)
        let y = try Harness.forward1(f, [x, w, b])
        let dy = Harness.random(y.shape, seed: seed + 3)
        let set = try Harness.backward(f, inputs: [x, w, b], outputGrads: [dy], want: [true, true, false])
        let startX = Harness.random(x.shape, seed: seed + 4), startW = Harness.random(w.shape, seed: seed + 5)
        let added = try Harness.backward(f, inputs: [x, w, b], outputGrads: [dy], want: [true, true, false],
                                         initial: [startX, startW, nil])
        return [y.toFloats(), set[0]!.toFloats(), set[1]!.toFloats(), added[0]!.toFloats(), added[1]!.toFloats(),
                x.toFloats(), w.toFloats(), b.toFloats(), dy.toFloats(), startX.toFloats(), startW.toFloats(),
                y.shape.dropFirst(2).map { Float($0) }]
    }

    func check(path: String) throws {
        kiln_tile_force_path(path)
        defer { kiln_tile_force_path(nil) }
        #expect(KernelPaths.tiles == path)
        for (i, c) in Self.cases.enumerated() {
            let r = try Self.run(c, seed: UInt64(40 + 10 * i))
            let ref = Self.reference(c, x: r[5], w: r[6], b: r[7], dy: r[8], out: r[11].map { Int($0) })
            let label = "\(path) \(c.testDescription)"
            #expect(mismatch(r[0], ref.y, rtol: 1e-5, atol: 1e-5) == nil, "forward \(label)")
            #expect(mismatch(r[1], ref.dx, rtol: 1e-5, atol: 1e-5) == nil, "dx \(label)")
            #expect(mismatch(r[2], ref.dw, rtol: 1e-5, atol: 1e-4) == nil, "dW \(label)")
            #expect(mismatch(r[3], zip(r[9], ref.dx).map { $0 + $1 }, rtol: 1e-5, atol: 1e-5) == nil, "dx += \(label)")
            #expect(mismatch(r[4], zip(r[10], ref.dw).map { $0 + $1 }, rtol: 1e-5, atol: 1e-4) == nil, "dW += \(label)")
        }
    }

    @Test func genericPathMatchesTheReference() throws { try check(path: "generic") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func avx2PathMatchesTheReference() throws { try check(path: "avx2+fma") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX512, "this CPU has no AVX-512 (F, BW, DQ, VL)"))
    func avx512PathMatchesTheReference() throws { try check(path: "avx512") }

    /// Every sum has one order: the AVX-512, AVX2 and generic paths, one thread and two give the same bits.
    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func pathsAndThreadsGiveTheSameBits() throws {
        for (i, c) in Self.cases.enumerated() {
            let r = try onEveryKernelPath { try Self.run(c, seed: UInt64(90 + i)).prefix(5).map { $0.map(\.bitPattern) } }
            #expect(r.generic == r.avx2, "generic vs avx2 \(c.testDescription)")
            if let wide = r.avx512 { #expect(r.avx2 == wide, "avx2 vs avx512 \(c.testDescription)") }
            #expect(r.avx2 == r.twoThreads, "1 vs 2 threads \(c.testDescription)")
        }
    }

    /// Deconvolution with one channel per group runs the data-gradient kernel forward and the forward kernel
    /// backward: its output against the transposed-convolution reference, and its input gradient against a
    /// depthwise convolution of dy.
    @Test func deconvolutionWithOneChannelPerGroup() throws {
        let x = Harness.random([2, 4, 6, 7], seed: 7), w = Harness.random([4, 1, 3, 3], seed: 8), b = Harness.random([4], seed: 9)
        let f = Deconvolution(pad: [1, 1], stride: [2, 2], group: 4)
        let y = try Harness.forward1(f, [x, w, b])
        let expected = LinearReference.deconvolution(x, w, b, baseAxis: 1, pad: [1, 1], stride: [2, 2], dilation: [1, 1],
                                                     group: 4, outputPadding: [0, 0])
        #expect(y.shape == expected.shape)
        #expect(mismatch(y.toFloats(), expected.data, rtol: 1e-5, atol: 1e-5) == nil)
        let dy = Harness.random(y.shape, seed: 10)
        let dx = try Harness.backward(f, inputs: [x, w, b], outputGrads: [dy], want: [true, false, false])[0]!
        let conv = LinearReference.convolution(dy, w, nil, baseAxis: 1, pad: [1, 1], stride: [2, 2], dilation: [1, 1], group: 4)
        #expect(mismatch(dx.toFloats(), conv.data, rtol: 1e-5, atol: 1e-5) == nil)
    }
}
