import Foundation
import Testing
@testable import Kiln

/// Losses and metrics against plain-loop references (in Double) and finite differences.
struct LossTests {
    /// x's classes for sample (o, i) around `axis`, read with plain index arithmetic.
    static func classes(_ x: NDArray, axis: Int, o: Int, i: Int) -> [Double] {
        let c = x.shape[axis]
        let inner = x.shape[(axis + 1)...].reduce(1, *)
        return (0..<c).map { Double(x.floats[o * c * inner + $0 * inner + i]) }
    }

    static func samples(_ shape: [Int], axis: Int) -> (outer: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[(axis + 1)...].reduce(1, *))
    }

    static func labels(_ shape: [Int], classes: Int, seed: UInt64, ignore: Set<Int> = []) throws -> NDArray {
        var rng = SplitMix64(seed: seed)
        let n = shape.reduce(1, *)
        let v = (0..<n).map { ignore.contains($0) ? Int32(-1) : Int32(Int.random(in: 0..<classes, using: &rng)) }
        return try Harness.ints(shape, v)
    }

    static func gradCheck(_ f: any Function, _ inputs: [NDArray], index: Int, seed: UInt64 = 77,
                          rtol: Float = 1e-2, atol: Float = 1e-3, eps: Float = 1e-2) throws -> String? {
        let outShape = try f.outputTypes(inputs.map { $0.type })[0].shape
        let dy = Harness.random(outShape, seed: seed)
        var want = [Bool](repeating: false, count: inputs.count)
        want[index] = true
        let g = try #require(try Harness.backward(f, inputs: inputs, outputGrads: [dy], want: want)[index])
        let num = try Harness.numericalGradient(f, inputs: inputs, outputGrads: [dy], index: index, eps: eps)
        return mismatch(g.toFloats(), num, rtol: rtol, atol: atol)
    }

    // MARK: - SoftmaxCrossEntropy

    @Test(arguments: [([4, 5], 1), ([2, 3, 4], 1), ([2, 3, 4], 2), ([3, 2, 2], 0)])
    func softmaxCrossEntropyMatchesNaiveReference(_ shape: [Int], _ axis: Int) throws {
        let x = Harness.random(shape, seed: 1, in: -3...3)
        var tShape = shape
        tShape[axis] = 1
        let t = try Self.labels(tShape, classes: shape[axis], seed: 2, ignore: [1])
        let y = try Harness.forward1(SoftmaxCrossEntropy(axis: axis), [x, t])
        #expect(y.shape == tShape)
        let (outer, inner) = Self.samples(shape, axis: axis)
        var expected: [Float] = []
        for o in 0..<outer {
            for i in 0..<inner {
                let l = Int(t.int32s[o * inner + i])
                if l < 0 { expected.append(0); continue }
                let v = Self.classes(x, axis: axis, o: o, i: i)
                let denom = v.map { Foundation.exp($0) }.reduce(0, +)
                expected.append(Float(-Foundation.log(Foundation.exp(v[l]) / denom)))
            }
        }
        #expect(mismatch(y.toFloats(), expected, rtol: 1e-5, atol: 1e-6) == nil)
        #expect(try Self.gradCheck(SoftmaxCrossEntropy(axis: axis), [x, t], index: 0) == nil)
        // The ignored sample gets no gradient.
        let g = try Harness.backward(SoftmaxCrossEntropy(axis: axis), inputs: [x, t],
                                     outputGrads: [Harness.random(tShape, seed: 3)], want: [true, false])
        #expect(g[1] == nil)
        let o1 = 1 / inner, i1 = 1 % inner
        let cnt = shape[axis]
        for c in 0..<cnt { #expect(g[0]!.floats[o1 * cnt * inner + c * inner + i1] == 0) }
    }

    @Test func softmaxCrossEntropyIsStableForHugeLogits() throws {
        let x = try Harness.floats([2, 3], [1000, 0, -1000, -500, 500, 0])
        let t = try Harness.ints([2, 1], [1, 1])
        let y = try Harness.forward1(SoftmaxCrossEntropy(), [x, t])
        #expect(y.toFloats() == [1000, 0])
        let g = try Harness.backward(SoftmaxCrossEntropy(), inputs: [x, t],
                                     outputGrads: [try Harness.floats([2, 1], [1, 1])], want: [true, false])[0]!
        #expect(g.toFloats() == [1, -1, 0, 0, 0, 0])
    }

    @Test func softmaxCrossEntropyErrors() throws {
        let f = SoftmaxCrossEntropy()
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([4, 5]), TensorType([4, 5], .int32)]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([4, 5]), TensorType([4], .int32)]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([4, 5]), TensorType([3, 1], .int32)]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([4, 5]), TensorType([4, 1])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([4, 5], .int32), TensorType([4, 1], .int32)]) }
        #expect(throws: KilnError.self) { try SoftmaxCrossEntropy(axis: 2).outputTypes([TensorType([4, 5]), TensorType([4, 1], .int32)]) }
        // A label past the last class is a data error thrown by the kernel, naming the value.
        let x = Harness.random([3, 4], seed: 4)
        let t = try Harness.ints([3, 1], [0, 4, 1])
        #expect {
            try Harness.forward(f, [x, t])
        } throws: { e in
            "\(e)".contains("label 4") && "\(e)".contains("[1, 0]")
        }
    }

    // MARK: - CategoricalCrossEntropy

    @Test(arguments: [([4, 5], 1), ([2, 3, 4], 1)])
    func categoricalCrossEntropyMatchesNaiveReference(_ shape: [Int], _ axis: Int) throws {
        let x = Harness.random(shape, seed: 5, in: 0.2...1)
        x.floats[0] = 0 // p = 0 is clamped to FLT_MIN
        var tShape = shape
        tShape[axis] = 1
        let t = try Self.labels(tShape, classes: shape[axis], seed: 6, ignore: [2])
        t.int32s[0] = 0
        let y = try Harness.forward1(CategoricalCrossEntropy(axis: axis), [x, t])
        let (outer, inner) = Self.samples(shape, axis: axis)
        var expected: [Float] = []
        for o in 0..<outer {
            for i in 0..<inner {
                let l = Int(t.int32s[o * inner + i])
                let p = l < 0 ? 1 : max(Self.classes(x, axis: axis, o: o, i: i)[l], Double(Float.leastNormalMagnitude))
                expected.append(l < 0 ? 0 : Float(-Foundation.log(p)))
            }
        }
        #expect(mismatch(y.toFloats(), expected, rtol: 1e-5, atol: 1e-6) == nil)
        #expect(abs(y.floats[0] - 87.33655) < 1e-4)
        x.floats[0] = 0.5 // finite differences away from the clamp
        #expect(try Self.gradCheck(CategoricalCrossEntropy(axis: axis), [x, t], index: 0) == nil)
    }

    @Test func categoricalCrossEntropyErrors() throws {
        let f = CategoricalCrossEntropy()
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([4, 5]), TensorType([4, 2], .int32)]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([4, 5])]) }
        let x = Harness.random([2, 3], seed: 7, in: 0.1...1)
        #expect(throws: KilnError.self) { try Harness.forward(f, [x, try Harness.ints([2, 1], [3, 0])]) }
        #expect(throws: KilnError.self) {
            try Harness.backward(f, inputs: [x, try Harness.ints([2, 1], [0, 9])],
                                 outputGrads: [Harness.random([2, 1], seed: 1)], want: [true, false])
        }
    }

    // MARK: - SigmoidCrossEntropy

    static func naiveSigmoidCE(_ x: Float, _ t: Float) -> Float {
        let xd = Double(x), td = Double(Int(t)) // nnabla reads the target as an int
        let s = 1 / (1 + Foundation.exp(-xd))
        return Float(-(td * Foundation.log(s) + (1 - td) * Foundation.log(1 - s)))
    }

    @Test func sigmoidCrossEntropyMatchesNaiveReference() throws {
        let x = Harness.random([3, 4], seed: 8, in: -4...4)
        let tv: [Float] = [0, 1, 1, 0, 0.7, 1.9, 0, 1, 1, 0, 0.3, 1]
        let t = try Harness.floats([3, 4], tv)
        let y = try Harness.forward1(SigmoidCrossEntropy(), [x, t])
        let expected = (0..<12).map { Self.naiveSigmoidCE(x.floats[$0], tv[$0]) }
        #expect(mismatch(y.toFloats(), expected, rtol: 1e-5, atol: 1e-6) == nil)
        #expect(try Self.gradCheck(SigmoidCrossEntropy(), [x, t], index: 0) == nil)
        // int32 targets give the same result as their float truncation.
        let ti = try Harness.ints([3, 4], tv.map { Int32($0) })
        let yi = try Harness.forward1(SigmoidCrossEntropy(), [x, ti])
        #expect(yi.toFloats() == y.toFloats())
        let dy = Harness.random([3, 4], seed: 9)
        let gf = try Harness.backward(SigmoidCrossEntropy(), inputs: [x, t], outputGrads: [dy], want: [true, true])
        let gi = try Harness.backward(SigmoidCrossEntropy(), inputs: [x, ti], outputGrads: [dy], want: [true, true])
        #expect(gf[1] == nil && gi[1] == nil)
        #expect(gf[0]!.toFloats() == gi[0]!.toFloats())
        // The gradient itself: dy * (sigmoid(x) - t).
        let expectedGrad = (0..<12).map { k -> Float in
            let s = 1 / (1 + Foundation.exp(-Double(x.floats[k])))
            return Float(Double(dy.floats[k]) * (s - Double(Int(tv[k]))))
        }
        #expect(mismatch(gf[0]!.toFloats(), expectedGrad, rtol: 1e-5, atol: 1e-6) == nil)
    }

    @Test func sigmoidCrossEntropyErrors() throws {
        let f = SigmoidCrossEntropy()
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4]), TensorType([3, 1])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4], .int32), TensorType([3, 4])]) }
        #expect(throws: KilnError.self) { try f.outputTypes([TensorType([3, 4]), TensorType([3, 4], .float16)]) }
        #expect(!f.propagatesGradient(toInput: 1, inputCount: 2))
    }

    // MARK: - SquaredError

    @Test func squaredErrorMatchesNaiveReferenceAndGradients() throws {
        let a = Harness.random([2, 3, 4], seed: 10), b = Harness.random([2, 3, 4], seed: 11)
        let y = try Harness.forward1(SquaredError(), [a, b])
        var expected: [Float] = []
        for k in 0..<24 { let d = a.floats[k] - b.floats[k]; expected.append(d * d) }
        #expect(y.toFloats() == expected)
        #expect(try Self.gradCheck(SquaredError(), [a, b], index: 0) == nil)
        #expect(try Self.gradCheck(SquaredError(), [a, b], index: 1) == nil)
        #expect(throws: KilnError.self) { try SquaredError().outputTypes([TensorType([2, 3]), TensorType([3, 2])]) }
        #expect(throws: KilnError.self) { try SquaredError().outputTypes([TensorType([2]), TensorType([2], .int32)]) }
    }

    // MARK: - TopNError

    @Test func topNErrorCountsTiesAgainstTheLabel() throws {
        // sample 0: label 2 is the unique max -> 0; sample 1: label 0 ties with class 3 for the max -> error
        // at n=1, fine at n=2; sample 2: label 1 is third -> error at n=1 and 2, fine at n=3.
        let x = try Harness.floats([3, 4], [0.1, 0.2, 0.9, 0.3,
                                            0.5, 0.1, 0.2, 0.5,
                                            0.7, 0.4, 0.1, 0.8])
        let t = try Harness.ints([3, 1], [2, 0, 1])
        #expect(try Harness.forward1(TopNError(n: 1), [x, t]).toFloats() == [0, 1, 1])
        #expect(try Harness.forward1(TopNError(n: 2), [x, t]).toFloats() == [0, 0, 1])
        #expect(try Harness.forward1(TopNError(n: 3), [x, t]).toFloats() == [0, 0, 0])
    }

    @Test func topNErrorMatchesNaiveReferenceOnAnInnerAxis() throws {
        let shape = [2, 5, 3]
        let x = Harness.random(shape, seed: 12)
        let t = try Self.labels([2, 1, 3], classes: 5, seed: 13)
        let y = try Harness.forward1(TopNError(axis: 1, n: 2), [x, t])
        #expect(y.shape == [2, 1, 3])
        var expected: [Float] = []
        for o in 0..<2 {
            for i in 0..<3 {
                let v = Self.classes(x, axis: 1, o: o, i: i)
                let l = Int(t.int32s[o * 3 + i])
                expected.append(v.filter { $0 >= v[l] }.count > 2 ? 1 : 0)
            }
        }
        #expect(y.toFloats() == expected)
        #expect(!TopNError().isDifferentiable)
        #expect(throws: KilnError.self) { try TopNError(axis: 1).outputTypes([TensorType(shape), TensorType([2, 5, 1], .int32)]) }
        #expect(throws: KilnError.self) { try TopNError(n: 0).outputTypes([TensorType([2, 5]), TensorType([2, 1], .int32)]) }
        #expect(throws: KilnError.self) { try Harness.forward(TopNError(), [Harness.random([2, 5], seed: 1), try Harness.ints([2, 1], [5, 0])]) }
    }

    // MARK: - BinaryError

    @Test func binaryErrorMatchesNaiveReference() throws {
        let xv: [Float] = [0.5, 0.49, 0.9, 0.1, 0.5, 0.7]
        let tv: [Float] = [1, 1, 0, 0, 0.5, 0.2]
        let y = try Harness.forward1(BinaryError(), [try Harness.floats([2, 3], xv), try Harness.floats([2, 3], tv)])
        #expect(y.toFloats() == [0, 1, 1, 0, 0, 1])
        let yi = try Harness.forward1(BinaryError(), [try Harness.floats([2, 3], xv), try Harness.ints([2, 3], [1, 1, 0, 0, 1, 0])])
        #expect(yi.toFloats() == [0, 1, 1, 0, 0, 1])
        #expect(!BinaryError().isDifferentiable)
        #expect(throws: KilnError.self) { try BinaryError().outputTypes([TensorType([2, 3]), TensorType([3, 2])]) }
    }

    // MARK: - Swift API

    @Test func apiResolvesDefaultAxes() throws {
        let x = try Variable(shape: [4, 3, 5])
        let t = try Variable(shape: [4, 3, 1], dtype: .int32)
        let y = try F.softmaxCrossEntropy(x, t)
        #expect(y.shape == [4, 3, 1])
        let args = try #require(y.parent?.function.arguments)
        #expect(args.first?.1 == .int(2))
        #expect(try F.topNError(x, t, n: 2).shape == [4, 3, 1])
        #expect(try F.categoricalCrossEntropy(x, try Variable(shape: [4, 1, 5], dtype: .int32), axis: 1).shape == [4, 1, 5])
        #expect(try F.squaredError(x, x).shape == [4, 3, 5])
        #expect(try F.binaryError(x, x).shape == [4, 3, 5])
        #expect(try F.sigmoidCrossEntropy(x, x).shape == [4, 3, 5])
    }
}
