import Testing
@testable import Kiln
@testable import KilnKernels

/// `Im2ColPlan.im2col` and `col2im` against the definition, computed naively per column row and output
/// position (col2im is im2col's adjoint: every column entry inside the image is added to its pixel).
struct Im2ColTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var image: [Int], kernel: [Int], pad: [Int], stride: [Int], dilation: [Int], channels = 2, samples = 3
        var testDescription: String { "image \(image) kernel \(kernel) pad \(pad) stride \(stride) dilation \(dilation)" }
    }

    /// Pixel index (within all samples' images) each column entry reads, -1 in the padding.
    static func sources(_ c: Case, col: [Int]) -> [Int] {
        let d = c.image.count
        let kCount = c.kernel.reduce(1, *), colCount = col.reduce(1, *), imageCount = c.image.reduce(1, *)
        let ld = c.samples * colCount
        var out = [Int](repeating: -1, count: c.channels * kCount * ld)
        func unravel(_ i: Int, _ dims: [Int]) -> [Int] {
            var r = i, idx = [Int](repeating: 0, count: dims.count)
            for j in stride(from: dims.count - 1, through: 0, by: -1) { idx[j] = r % dims[j]; r /= dims[j] }
            return idx
        }
        for s in 0..<c.samples {
            for ch in 0..<c.channels {
                for k in 0..<kCount {
                    let kIdx = unravel(k, c.kernel)
                    for o in 0..<colCount {
                        let oIdx = unravel(o, col)
                        var off = 0, inside = true
                        for j in 0..<d {
                            let i = oIdx[j] * c.stride[j] - c.pad[j] + kIdx[j] * c.dilation[j]
                            if i < 0 || i >= c.image[j] { inside = false }
                            off = off * c.image[j] + i
                        }
                        if inside { out[(ch * kCount + k) * ld + s * colCount + o] = s * c.channels * imageCount + ch * imageCount + off }
                    }
                }
            }
        }
        return out
    }

    /// Output positions per spatial dimension.
    static func colSize(_ c: Case) -> [Int] {
        var col: [Int] = []
        for j in 0..<c.image.count {
            let span: Int = c.dilation[j] * (c.kernel[j] - 1) + 1
            col.append((c.image[j] + 2 * c.pad[j] - span) / c.stride[j] + 1)
        }
        return col
    }

    static func naive(_ c: Case, col: [Int], image: [Float]) -> [Float] {
        sources(c, col: col).map { $0 >= 0 ? image[$0] : 0 }
    }

    @Test(arguments: [
        Case(image: [32, 32], kernel: [3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1]),   // same: contiguous runs
        Case(image: [7, 9], kernel: [3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1]),
        Case(image: [6, 5], kernel: [5, 5], pad: [2, 2], stride: [1, 1], dilation: [1, 1]),
        Case(image: [9, 8], kernel: [3, 3], pad: [2, 2], stride: [1, 1], dilation: [2, 2]),    // dilated, same size
        Case(image: [8, 8], kernel: [3, 3], pad: [1, 1], stride: [2, 2], dilation: [1, 1]),
        Case(image: [8, 8], kernel: [1, 1], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),
        Case(image: [5, 6], kernel: [3, 3], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),
        Case(image: [4, 5, 6], kernel: [3, 3, 3], pad: [1, 1, 1], stride: [1, 1, 1], dilation: [1, 1, 1]),
        Case(image: [10], kernel: [3], pad: [1], stride: [1], dilation: [1]),
        Case(image: [3, 11], kernel: [1, 3], pad: [0, 1], stride: [1, 1], dilation: [1, 1]),
        // Whole rows of whole vectors (LeNet: 8 and 24 wide), and rows in the padding above and below.
        Case(image: [12, 12], kernel: [5, 5], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),
        Case(image: [28, 28], kernel: [5, 5], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),
        Case(image: [10, 18], kernel: [5, 3], pad: [2, 0], stride: [1, 1], dilation: [1, 1]),
        // Stride 2 from 16-float rows to 8 outputs, one row load each (ResNet-20's stage-3 downsampling and
        // projection); offsets two columns away and dilated ones take the general path in the same plan.
        Case(image: [16, 16], kernel: [3, 3], pad: [1, 1], stride: [2, 2], dilation: [1, 1]),
        Case(image: [16, 16], kernel: [1, 1], pad: [0, 0], stride: [2, 2], dilation: [1, 1]),
        Case(image: [5, 16], kernel: [3, 3], pad: [1, 1], stride: [2, 2], dilation: [1, 1]),
        Case(image: [16, 16], kernel: [5, 5], pad: [2, 2], stride: [2, 2], dilation: [1, 1]),
        Case(image: [16, 16], kernel: [3, 3], pad: [2, 2], stride: [2, 2], dilation: [2, 2]),
    ])
    func matchesTheDefinition(_ c: Case) {
        let col = Self.colSize(c)
        let plan = Im2ColPlan(channels: c.channels, image: c.image, col: col, kernel: c.kernel, pad: c.pad,
                              stride: c.stride, dilation: c.dilation)
        let imageCount = c.image.reduce(1, *)
        var rng = SplitMix64(seed: 21)
        let image = (0..<(c.samples * c.channels * imageCount)).map { _ in Float.random(in: 1...2, using: &rng) }
        let expected = Self.naive(c, col: col, image: image)
        var got = [Float](repeating: .nan, count: expected.count)
        image.withUnsafeBufferPointer { img in
            got.withUnsafeMutableBufferPointer { out in
                plan.im2col(samples: c.samples, img.baseAddress!, imageStride: c.channels * imageCount,
                            out.baseAddress!, ld: c.samples * col.reduce(1, *), parallel: false)
            }
        }
        #expect(got == expected)
    }

    @Test(arguments: [
        Case(image: [32, 32], kernel: [3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1]),
        Case(image: [7, 9], kernel: [3, 3], pad: [1, 1], stride: [1, 1], dilation: [1, 1]),
        Case(image: [6, 5], kernel: [5, 5], pad: [2, 2], stride: [1, 1], dilation: [1, 1]),
        Case(image: [9, 8], kernel: [3, 3], pad: [2, 2], stride: [1, 1], dilation: [2, 2]),
        Case(image: [8, 8], kernel: [3, 3], pad: [1, 1], stride: [2, 2], dilation: [1, 1]),
        Case(image: [5, 6], kernel: [3, 3], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),
        Case(image: [4, 5, 6], kernel: [3, 3, 3], pad: [1, 1, 1], stride: [1, 1, 1], dilation: [1, 1, 1]),
        Case(image: [10], kernel: [3], pad: [1], stride: [1], dilation: [1]),
        // Strided 2-D: col2im by phases (StridedCol2Im), including odd sizes, a phase no offset feeds,
        // unequal strides, stride 3, dilation, padding wider than the stride and 16-wide rows (vector steps).
        Case(image: [32, 32], kernel: [3, 3], pad: [1, 1], stride: [2, 2], dilation: [1, 1]),
        Case(image: [16, 16], kernel: [1, 1], pad: [0, 0], stride: [2, 2], dilation: [1, 1]),
        Case(image: [9, 7], kernel: [3, 3], pad: [1, 1], stride: [2, 2], dilation: [1, 1]),
        Case(image: [9, 11], kernel: [3, 3], pad: [0, 0], stride: [2, 2], dilation: [1, 1]),
        Case(image: [10, 9], kernel: [3, 2], pad: [1, 0], stride: [2, 1], dilation: [1, 1]),
        Case(image: [11, 13], kernel: [5, 5], pad: [2, 2], stride: [3, 3], dilation: [1, 1]),
        Case(image: [12, 12], kernel: [3, 3], pad: [2, 2], stride: [2, 2], dilation: [2, 2]),
        Case(image: [7, 35], kernel: [4, 4], pad: [3, 3], stride: [2, 2], dilation: [1, 1]),
        Case(image: [6, 6], kernel: [2, 2], pad: [0, 0], stride: [3, 3], dilation: [1, 1]),
        Case(image: [12, 12], kernel: [5, 5], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),
        Case(image: [28, 28], kernel: [5, 5], pad: [0, 0], stride: [1, 1], dilation: [1, 1]),
        Case(image: [10, 18], kernel: [5, 3], pad: [2, 0], stride: [1, 1], dilation: [1, 1]),
    ])
    func col2imIsTheAdjoint(_ c: Case) {
        let col = Self.colSize(c)
        let plan = Im2ColPlan(channels: c.channels, image: c.image, col: col, kernel: c.kernel, pad: c.pad,
                              stride: c.stride, dilation: c.dilation)
        let imageCount = c.image.reduce(1, *)
        var rng = SplitMix64(seed: 22)
        let start = (0..<(c.samples * c.channels * imageCount)).map { _ in Float.random(in: -1...1, using: &rng) }
        let src = Self.sources(c, col: col)
        let original = src.map { _ in Float.random(in: -1...1, using: &rng) }
        // Added into the image, or (overwrite) setting it: pixels no entry reaches become 0.
        for overwrite in [false, true] {
            var expected = overwrite ? start.map { _ in 0.0 } : start.map { Double($0) }
            for (i, p) in src.enumerated() where p >= 0 { expected[p] += Double(original[i]) }
            var got = start
            var cols = original
            cols.withUnsafeMutableBufferPointer { cb in
                got.withUnsafeMutableBufferPointer { ib in
                    plan.col2im(samples: c.samples, cb.baseAddress!, ld: c.samples * col.reduce(1, *), ib.baseAddress!,
                                imageStride: c.channels * imageCount, parallel: false, overwrite: overwrite)
                }
            }
            #expect(zip(got, expected).allSatisfy { abs(Double($0) - $1) <= 1e-5 }, "overwrite \(overwrite)")
        }
    }

    /// ResNet-20's downsampling layers (3x3 pad 1 and 1x1, stride 2) take the phase path, so the adjoint test
    /// above covers the code they run.
    @Test func stridedLayersUsePhases() {
        for (kernel, pad, col) in [(3, 1, 16), (1, 0, 16)] {
            let plan = Im2ColPlan(channels: 16, image: [32, 32], col: [col, col], kernel: [kernel, kernel], pad: [pad, pad],
                                  stride: [2, 2], dilation: [1, 1])
            #expect(plan.col2imByPhases)
        }
        let plain = Im2ColPlan(channels: 16, image: [32, 32], col: [32, 32], kernel: [3, 3], pad: [1, 1], stride: [1, 1],
                               dilation: [1, 1])
        #expect(!plain.col2imByPhases)
    }
}
