import CKilnKernels
import Testing
@testable import Kiln
@testable import KilnKernels

/// The direct forward kernel of 2-D convolutions (`DirectConvolution`) through the Convolution function against
/// LinearReference's naive convolution, with bias, set and accumulated, maps not a multiple of 6, strides 1 and 2,
/// padding, dilation, rows that end in a partial segment, rows 8 wide (paired on the AVX-512 path); the same bits on
/// every kernel path and for one thread or two (batch 1 shares its maps between the threads). The data gradient of
/// stride-1 cases runs the same kernel on the turned weight: against the transposed convolution of dy. The weight
/// gradient (every case) against sums in Double straight from the definition.
@Suite(.serialized)
struct DirectConvolutionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var batch: Int, channels: Int, maps: Int, image: [Int], kernel = [3, 3], stride = [1, 1], pad = [1, 1],
            dilation = [1, 1]
        var testDescription: String { "n\(batch) \(channels)->\(maps) \(image) k\(kernel) s\(stride) p\(pad) d\(dilation)" }
    }

    static let cases: [Case] = [
        Case(batch: 2, channels: 3, maps: 8, image: [8, 8]),                                   // one segment a row
        Case(batch: 3, channels: 5, maps: 6, image: [9, 32]),                                  // 4 segments a row, 2 maps short
        Case(batch: 2, channels: 4, maps: 5, image: [34, 52], stride: [2, 2]),                 // 26 wide: a partial segment
        Case(batch: 1, channels: 2, maps: 7, image: [10, 26], kernel: [5, 5], pad: [2, 2]),    // batch 1, odd size
        Case(batch: 2, channels: 3, maps: 4, image: [11, 28], pad: [2, 2], dilation: [2, 2]),
        Case(batch: 2, channels: 2, maps: 9, image: [7, 24], kernel: [3, 1], stride: [2, 1], pad: [1, 0]),
        Case(batch: 1, channels: 2, maps: 3, image: [20, 52], stride: [2, 2], pad: [2, 2], dilation: [2, 2]),  // parity planes, dilated
        Case(batch: 1, channels: 16, maps: 8, image: [8, 32]),                                 // ResNet-20-like channels
        Case(batch: 2, channels: 1, maps: 1, image: [190, 190]),   // large samples: the weight gradient pads one at a time
        Case(batch: 2, channels: 3, maps: 10, image: [9, 8]),      // AVX-512: two rows a segment, the odd last row alone
        Case(batch: 1, channels: 3, maps: 6, image: [15, 16], stride: [2, 2]),  // AVX-512: paired rows of parity planes
    ]

    @Test func everyCaseTakesTheDirectKernel() throws {
        for c in Self.cases {
            let f = Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation)
            let g = try f.geometry([TensorType([c.batch, c.channels] + c.image, .float32),
                                    TensorType([c.maps, c.channels] + c.kernel, .float32)]).0
            #expect(DirectConvolution(g) != nil, "\(c.testDescription)")
            #expect((DirectConvolution(dataGradientOf: g) != nil) == (c.stride == [1, 1]), "dx \(c.testDescription)")
            // The weight gradient's own kernel runs for planes of 256 outputs or more: strides 1 and 2 among them.
            if c.image == [34, 52] || c.image == [9, 32] { #expect(DirectConvolution(g)?.takesWeightGradient == true) }
            if c.image == [190, 190] { #expect(DirectConvolution(g).map { $0.weightGradientSamples < c.batch } == true) }
        }
        // Rows too short for 8-wide segments, groups, and strides the kernel has no layout for keep im2col.
        func geometry(col: Int, group: Int = 1, stride: Int = 1) -> ConvGeometry {
            ConvGeometry(batch: 1, channels: 4, outmaps: 4, group: group, image: [20, 20], col: [col, col], kernel: [3, 3],
                         pad: [1, 1], stride: [stride, stride], dilation: [1, 1])
        }
        #expect(DirectConvolution(geometry(col: 4)) == nil)
        #expect(DirectConvolution(geometry(col: 12)) == nil)
        #expect(DirectConvolution(geometry(col: 16, group: 2)) == nil)
        #expect(DirectConvolution(geometry(col: 8, stride: 3)) == nil)
    }

    static func run(_ c: Case, seed: UInt64) throws -> (y: NDArray, added: NDArray, x: NDArray, w: NDArray, b: NDArray,
                                                         start: NDArray, dy: NDArray, dx: NDArray, dxAdded: NDArray,
                                                         dxStart: NDArray, dw: NDArray, dwAdded: NDArray,
                                                         dwStart: NDArray) {
        let f = Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation)
        let x = Harness.random([c.batch, c.channels] + c.image, seed: seed)
        let w = Harness.random([c.maps, c.channels] + c.kernel, seed: seed + 1)
        let b = Harness.random([c.maps], seed: seed + 2)
        let y = try Harness.forward1(f, [x, w, b])
        // Accumulated: forward into an output that already holds values.
        let start = Harness.random(y.shape, seed: seed + 3)
        let out = Harness.copy(start)
        let tb = TypeBinding(inputs: [x.type, w.type, b.type], outputs: [y.type])
        let ws = Harness.workspace(f.forwardWorkspace(tb))
        defer { ws?.deallocate() }
        let engine = ConvolutionEngine(try f.geometry([x.type, w.type]).0)
        engine.forward(image: Harness.tensor(x).f, weight: Harness.tensor(w).f, col: Harness.tensor(out).f,
                       bias: Harness.tensor(b).f, accumulate: true, workspace: ws?.assumingMemoryBound(to: Float.self))
        // The data gradient, set and accumulated.
        let dy = Harness.random(y.shape, seed: seed + 4), dxStart = Harness.random(x.shape, seed: seed + 5)
        let dx = try Harness.backward(f, inputs: [x, w, b], outputGrads: [dy], want: [true, false, false])[0]!
        let dxAdded = try Harness.backward(f, inputs: [x, w, b], outputGrads: [dy], want: [true, false, false],
                                           initial: [dxStart, nil, nil])[0]!
        let dwStart = Harness.random(w.shape, seed: seed + 6)
        let dw = try Harness.backward(f, inputs: [x, w, b], outputGrads: [dy], want: [false, true, false])[1]!
        let dwAdded = try Harness.backward(f, inputs: [x, w, b], outputGrads: [dy], want: [false, true, false],
                                           initial: [nil, dwStart, nil])[1]!
        return (y, out, x, w, b, start, dy, dx, dxAdded, dxStart, dw, dwAdded, dwStart)
    }

    /// dW[m][c][i][j] = sum over samples and output pixels of dy * x at the pixel's tap, in Double.
    static func weightGradient(_ c: Case, x: [Float], dy: [Float], out: [Int]) -> [Float] {
        let (h, wd) = (c.image[0], c.image[1]), (kh, kw) = (c.kernel[0], c.kernel[1])
        var dw = [Double](repeating: 0, count: c.maps * c.channels * kh * kw)
        for n in 0..<c.batch {
            for m in 0..<c.maps {
                for oy in 0..<out[0] {
                    for ox in 0..<out[1] {
                        let g = Double(dy[((n * c.maps + m) * out[0] + oy) * out[1] + ox])
                        for ch in 0..<c.channels {
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let iy = oy * c.stride[0] - c.pad[0] + i * c.dilation[0]
                                    let ix = ox * c.stride[1] - c.pad[1] + j * c.dilation[1]
                                    guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                                    dw[((m * c.channels + ch) * kh + i) * kw + j] += g * Double(x[((n * c.channels + ch) * h + iy) * wd + ix])
                                }
                            }
                        }
                    }
                }
            }
        }
        return dw.map { Float($0) }
    }

    func check(path: String) throws {
        kiln_tile_force_path(path)
        defer { kiln_tile_force_path(nil) }
        for (i, c) in Self.cases.enumerated() {
            let r = try Self.run(c, seed: UInt64(70 + 10 * i))
            let ref = LinearReference.convolution(r.x, r.w, r.b, baseAxis: 1, pad: c.pad, stride: c.stride,
                                                  dilation: c.dilation, group: 1)
            #expect(r.y.shape == ref.shape)
            #expect(mismatch(r.y.toFloats(), ref.data, rtol: 1e-5, atol: 1e-5) == nil, "\(path) \(c.testDescription)")
            let sum = zip(r.start.toFloats(), ref.data).map { $0 + $1 }
            #expect(mismatch(r.added.toFloats(), sum, rtol: 1e-5, atol: 1e-5) == nil, "\(path) += \(c.testDescription)")
            // dx: the transposed convolution of dy, with output padding where the stride leaves rows unfed.
            let reach = (0..<2).map { (a: Int) -> Int in
                let span: Int = c.dilation[a] * (c.kernel[a] - 1) + 1
                return c.stride[a] * (r.y.shape[2 + a] - 1) + span - 2 * c.pad[a]
            }
            let dxRef = LinearReference.deconvolution(r.dy, r.w, nil, baseAxis: 1, pad: c.pad, stride: c.stride,
                                                      dilation: c.dilation, group: 1,
                                                      outputPadding: [c.image[0] - reach[0], c.image[1] - reach[1]])
            #expect(dxRef.shape == r.x.shape)
            #expect(mismatch(r.dx.toFloats(), dxRef.data, rtol: 1e-5, atol: 1e-5) == nil, "\(path) dx \(c.testDescription)")
            let dwRef = Self.weightGradient(c, x: r.x.toFloats(), dy: r.dy.toFloats(), out: Array(r.y.shape.dropFirst(2)))
            #expect(mismatch(r.dw.toFloats(), dwRef, rtol: 1e-4, atol: 1e-4) == nil, "\(path) dW \(c.testDescription)")
            let dwSum = zip(r.dwStart.toFloats(), dwRef).map { $0 + $1 }
            #expect(mismatch(r.dwAdded.toFloats(), dwSum, rtol: 1e-4, atol: 1e-4) == nil, "\(path) dW += \(c.testDescription)")
            let dxSum = zip(r.dxStart.toFloats(), dxRef.data).map { $0 + $1 }
            #expect(mismatch(r.dxAdded.toFloats(), dxSum, rtol: 1e-5, atol: 1e-5) == nil, "\(path) dx += \(c.testDescription)")
        }
    }

    @Test func genericPathMatchesTheReference() throws { try check(path: "generic") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func avx2PathMatchesTheReference() throws { try check(path: "avx2+fma") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX512, "this CPU has no AVX-512 (F, BW, DQ, VL)"))
    func avx512PathMatchesTheReference() throws { try check(path: "avx512") }

    /// The direct kernels' sums have one order whatever the path and thread count: the forward, the data gradient,
    /// and the weight gradient where the direct kernel computes it (planes of 256 outputs or more). On smaller
    /// planes the weight gradient takes the im2col route, whose threads each sum their own chunks of samples
    /// (docs/ARCHITECTURE.md): its bits are the same on every path, and on 2 threads within rounding of 1 thread.
    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func pathsAndThreadsGiveTheSameBits() throws {
        for (i, c) in Self.cases.enumerated() {
            let f = Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation)
            let g = try f.geometry([TensorType([c.batch, c.channels] + c.image, .float32),
                                    TensorType([c.maps, c.channels] + c.kernel, .float32)]).0
            let directWeight = DirectConvolution(g)?.takesWeightGradient == true
            let r = try onEveryKernelPath { () throws -> (direct: [UInt32], weight: [Float]) in
                let r = try Self.run(c, seed: UInt64(90 + i))
                let direct = r.y.toFloats() + r.added.toFloats() + r.dx.toFloats() + r.dxAdded.toFloats()
                let weight = r.dw.toFloats() + r.dwAdded.toFloats()
                return ((directWeight ? direct + weight : direct).map(\.bitPattern), weight)
            }
            #expect(r.generic.direct == r.avx2.direct, "generic vs avx2 \(c.testDescription)")
            #expect(r.generic.weight.map(\.bitPattern) == r.avx2.weight.map(\.bitPattern), "generic vs avx2 dW \(c.testDescription)")
            if let wide = r.avx512 {
                #expect(r.avx2.direct == wide.direct, "avx2 vs avx512 \(c.testDescription)")
                #expect(r.avx2.weight.map(\.bitPattern) == wide.weight.map(\.bitPattern), "avx2 vs avx512 dW \(c.testDescription)")
            }
            #expect(r.avx2.direct == r.twoThreads.direct, "1 vs 2 threads \(c.testDescription)")
            #expect(mismatch(r.twoThreads.weight, r.avx2.weight, rtol: 1e-5, atol: 1e-5) == nil, "1 vs 2 threads dW \(c.testDescription)")
        }
    }
}
