import Testing
@testable import Kiln

/// Embed against a naive row lookup, finite differences on W and index checks.
struct EmbedTests {
    @Test(arguments: [([2, 3], [5, 4]), ([7], [3, 2, 3]), ([2, 2, 2], [4]), ([], [6, 2])])
    func forwardAndBackwardMatchReference(_ xShape: [Int], _ wShape: [Int]) throws {
        let n = xShape.reduce(1, *), rows = wShape[0], row = wShape.dropFirst().reduce(1, *)
        let indices = (0..<n).map { Int32(($0 * 3 + 1) % rows) } // repeats when n > rows
        let x = try Harness.ints(xShape, indices)
        let w = Harness.random(wShape, seed: 3)
        let f = Embed()
        let y = try Harness.forward1(f, [x, w])
        #expect(y.shape == xShape + wShape.dropFirst())
        var expected: [Float] = []
        for i in 0..<n { for j in 0..<row { expected.append(w.floats[Int(indices[i]) * row + j]) } }
        #expect(y.toFloats() == expected)

        let dy = Harness.random(y.shape, seed: 4)
        let grads = try Harness.backward(f, inputs: [x, w], outputGrads: [dy], want: [true, true])
        #expect(grads[0] == nil, "no gradient for the indices")
        let dw = try #require(grads[1])
        var scatter = [Float](repeating: 0, count: w.count)
        for i in 0..<n { for j in 0..<row { scatter[Int(indices[i]) * row + j] += dy.floats[i * row + j] } }
        #expect(mismatch(dw.toFloats(), scatter, rtol: 1e-6, atol: 1e-7) == nil)
        let num = try Harness.numericalGradient(f, inputs: [x, w], outputGrads: [dy], index: 1)
        #expect(mismatch(dw.toFloats(), num, rtol: 1e-2, atol: 1e-3) == nil)
    }

    @Test func duplicateIndicesAccumulate() throws {
        let x = try Harness.ints([4], [1, 1, 0, 1])
        let w = try Harness.floats([2, 1], [10, 20])
        let dy = try Harness.floats([4, 1], [1, 2, 3, 4])
        let dw = try #require(try Harness.backward(Embed(), inputs: [x, w], outputGrads: [dy], want: [false, true])[1])
        #expect(dw.toFloats() == [3, 7])
        let initial = try Harness.floats([2, 1], [100, 200])
        let acc = try #require(try Harness.backward(Embed(), inputs: [x, w], outputGrads: [dy], want: [false, true],
                                                    initial: [nil, initial])[1])
        #expect(acc.toFloats() == [103, 207])
    }

    @Test func outOfRangeIndexThrowsFromTheKernel() throws {
        let w = Harness.random([3, 2], seed: 1)
        for bad: Int32 in [3, -1, 100] {
            let x = try Harness.ints([2, 2], [0, 1, bad, 2])
            do {
                _ = try Harness.forward1(Embed(), [x, w])
                Issue.record("index \(bad) did not throw")
            } catch let e as KilnError {
                #expect("\(e)".contains("\(bad)"), "the error names the index: \(e)")
            }
            #expect(throws: KilnError.self) {
                _ = try Harness.backward(Embed(), inputs: [try Harness.ints([1], [0]), w],
                                         outputGrads: [Harness.random([1, 2], seed: 2)], want: [false, true])
                // forward of the valid case works; now the bad one
                _ = try Harness.backward(Embed(), inputs: [x, w], outputGrads: [Harness.random([2, 2, 2], seed: 2)],
                                         want: [false, true])
            }
        }
    }

    @Test func rejectsBadInputs() throws {
        let f = Embed()
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2, 3]), TensorType([5, 4])]) } // float indices
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2], .int32), TensorType([5, 4], .int32)]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2], .int32), TensorType([])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2], .int32)]) }
        #expect(!f.propagatesGradient(toInput: 0, inputCount: 2) && f.propagatesGradient(toInput: 1, inputCount: 2))
        let x = try Variable(shape: [3], dtype: .int32), w = try Variable(shape: [4, 2], needGrad: true)
        #expect(try F.embed(x, w).shape == [3, 2])
    }
}
