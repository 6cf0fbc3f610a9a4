import Testing
@testable import Kiln
@testable import KilnKernels

/// `StridedPointwiseData` (the data gradient of 1x1 convolutions with a column stride of 2) against the plain
/// transposed-convolution reference, set and accumulated, on one thread and on two.
@Suite struct StridedPointwiseDataTests {
    struct Case {
        var x: [Int], w: [Int], stride: [Int], group = 1
    }

    static let cases: [Case] = [
        Case(x: [3, 6, 6, 16], w: [5, 6, 1, 1], stride: [2, 2]),             // 24 positions: a tile and 8 left; 6 = 4 + 2 channels
        Case(x: [2, 8, 5, 32], w: [4, 4, 1, 1], stride: [3, 2], group: 2),   // rows 3 apart, groups
        Case(x: [2, 4, 4, 16], w: [3, 4, 1, 1], stride: [1, 2]),             // every row fed
        Case(x: [4, 32, 16, 16], w: [64, 32, 1, 1], stride: [2, 2]),         // ResNet-20's stage-3 projection
        Case(x: [2, 16, 32, 32], w: [32, 16, 1, 1], stride: [2, 2]),         // its stage-2 projection
    ]

    @Test func onlyWholeEightWideRowsTakeTheKernel() {
        func geometry(_ image: [Int], _ stride: [Int], pad: [Int] = [0, 0], kernel: [Int] = [1, 1]) -> ConvGeometry {
            let col = image.indices.map { (image[$0] + 2 * pad[$0] - kernel[$0]) / stride[$0] + 1 }
            return ConvGeometry(batch: 1, channels: 2, outmaps: 2, group: 1, image: image, col: col, kernel: kernel,
                                pad: pad, stride: stride, dilation: [1, 1])
        }
        #expect(StridedPointwiseData(geometry([16, 16], [2, 2])) != nil)
        #expect(StridedPointwiseData(geometry([15, 16], [2, 2])) != nil)
        #expect(StridedPointwiseData(geometry([16, 15], [2, 2])) == nil)      // odd width: the last column is a pixel
        #expect(StridedPointwiseData(geometry([16, 12], [2, 2])) == nil)      // 6-wide output rows
        #expect(StridedPointwiseData(geometry([16, 16], [2, 1])) == nil)
        #expect(StridedPointwiseData(geometry([16, 16], [2, 2], pad: [1, 1])) == nil)
        #expect(StridedPointwiseData(geometry([16, 16], [2, 2], kernel: [3, 3])) == nil)
    }

    @Test(arguments: [1, 2])
    func matchesTheTransposedConvolution(threads: Int) throws {
        try Threads.with(threads) {
            for (i, c) in Self.cases.enumerated() {
                let x = Harness.random(c.x, seed: UInt64(300 + i)), w = Harness.random(c.w, seed: UInt64(400 + i))
                let f = Convolution(pad: [0, 0], stride: c.stride, dilation: [1, 1], group: c.group)
                let y = try Harness.forward1(f, [x, w])
                let dy = Harness.random(y.shape, seed: UInt64(500 + i))
                // Output padding makes the reference as large as the input (which may have a row past the last fed one).
                let reach = (0..<2).map { c.stride[$0] * (y.shape[2 + $0] - 1) + 1 }
                let expected = LinearReference.deconvolution(dy, w, nil, baseAxis: 1, pad: [0, 0], stride: c.stride,
                                                             dilation: [1, 1], group: c.group,
                                                             outputPadding: [c.x[2] - reach[0], c.x[3] - reach[1]]).data
                // Set: every pixel, the unfed ones included (the harness fills the gradient with NaN first).
                let set = try Harness.backward(f, inputs: [x, w], outputGrads: [dy], want: [true, false])[0]!
                #expect(mismatch(set.toFloats(), expected, rtol: 1e-4, atol: 1e-4) == nil, "case \(i), set")
                // Accumulated into what was there.
                let start = Harness.random(c.x, seed: UInt64(600 + i))
                let added = try Harness.backward(f, inputs: [x, w], outputGrads: [dy], want: [true, false],
                                                 initial: [start, nil])[0]!
                let sum = zip(start.toFloats(), expected).map { $0 + $1 }
                #expect(mismatch(added.toFloats(), sum, rtol: 1e-4, atol: 1e-4) == nil, "case \(i), accumulated")
            }
        }
    }
}
