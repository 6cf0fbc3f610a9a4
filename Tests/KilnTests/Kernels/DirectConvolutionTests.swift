import CKilnKernels
import Testing
@testable import Kiln
@testable import KilnKernels

/// The direct forward kernel of 2-D convolutions (`DirectConvolution`) through the Convolution function against
/// LinearReference's naive convolution, with bias, set and accumulated, maps not a multiple of 6, strides 1 and 2,
/// padding, dilation, rows that end in a partial segment; the same bits on every kernel path and for one thread
/// or two (batch 1 shares its maps between the threads). The data gradient of stride-1 cases runs the same kernel
/// on the turned weight: against the transposed convolution of dy.
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
        Case(batch: 2, channels: 4, maps: 5, image: [12, 52], stride: [2, 2]),                 // 26 wide: a partial segment
        Case(batch: 1, channels: 2, maps: 7, image: [10, 26], kernel: [5, 5], pad: [2, 2]),    // batch 1, odd size
        Case(batch: 2, channels: 3, maps: 4, image: [11, 28], pad: [2, 2], dilation: [2, 2]),
        Case(batch: 2, channels: 2, maps: 9, image: [7, 24], kernel: [3, 1], stride: [2, 1], pad: [1, 0]),
        Case(batch: 1, channels: 16, maps: 8, image: [8, 32]),                                 // ResNet-20-like channels
    ]

    @Test func everyCaseTakesTheDirectKernel() throws {
        for c in Self.cases {
            let f = Convolution(pad: c.pad, stride: c.stride, dilation: c.dilation)
            let g = try f.geometry([TensorType([c.batch, c.channels] + c.image, .float32),
                                    TensorType([c.maps, c.channels] + c.kernel, .float32)]).0
            #expect(DirectConvolution(g) != nil, "\(c.testDescription)")
            #expect((DirectConvolution(dataGradientOf: g) != nil) == (c.stride == [1, 1]), "dx \(c.testDescription)")
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
                                                         dxStart: NDArray) {
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
        return (y, out, x, w, b, start, dy, dx, dxAdded, dxStart)
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
            let dxSum = zip(r.dxStart.toFloats(), dxRef.data).map { $0 + $1 }
            #expect(mismatch(r.dxAdded.toFloats(), dxSum, rtol: 1e-5, atol: 1e-5) == nil, "\(path) dx += \(c.testDescription)")
        }
    }

    @Test func genericPathMatchesTheReference() throws { try check(path: "generic") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func avx2PathMatchesTheReference() throws { try check(path: "avx2+fma") }

    @Test(.enabled(if: CPUFeatures.current.hasAVX2, "this CPU has no AVX2 and FMA"))
    func pathsAndThreadsGiveTheSameBits() throws {
        for (i, c) in Self.cases.enumerated() {
            var results: [[UInt32]] = []
            for (path, threads) in [("generic", 1), ("avx2+fma", 1), ("avx2+fma", 2)] {
                kiln_tile_force_path(path)
                defer { kiln_tile_force_path(nil) }
                let r = try Threads.with(threads) { try Self.run(c, seed: UInt64(90 + i)) }
                results.append((r.y.toFloats() + r.added.toFloats() + r.dx.toFloats() + r.dxAdded.toFloats()).map(\.bitPattern))
            }
            #expect(results[0] == results[1], "generic vs avx2 \(c.testDescription)")
            #expect(results[1] == results[2], "1 vs 2 threads \(c.testDescription)")
        }
    }
}
