import Testing
@testable import Kiln

/// Sum and Mean against a naive reduction and finite differences.
struct ReductionTests {
    /// Naive reduction: every input element is added (in Double) to the output element obtained by
    /// dropping (or zeroing, with keep_dims) its reduced coordinates. Returns the output shape and values.
    static func naive(_ x: NDArray, axes: [Int], keepDims: Bool, mean: Bool) -> (shape: [Int], values: [Float]) {
        let shape = x.shape
        let ax = Set(axes.map { $0 < 0 ? $0 + shape.count : $0 })
        var outShape: [Int] = []
        for d in shape.indices {
            if ax.contains(d) { if keepDims { outShape.append(1) } } else { outShape.append(shape[d]) }
        }
        let keptShape = shape.indices.filter { !ax.contains($0) }.map { shape[$0] }
        var sums = [Double](repeating: 0, count: keptShape.reduce(1, *))
        var reduced = 1
        for d in ax { reduced *= shape[d] }
        for k in 0..<x.count {
            var r = k
            var idx = [Int](repeating: 0, count: shape.count)
            for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = r % shape[d]; r /= shape[d] }
            var o = 0
            for d in shape.indices where !ax.contains(d) { o = o * shape[d] + idx[d] }
            sums[o] += Double(x.floats[k])
        }
        return (outShape, sums.map { Float(mean ? $0 / Double(reduced) : $0) })
    }

    /// Naive backward: every input element receives its output element's gradient (divided by the count
    /// for Mean).
    static func naiveBackward(_ shape: [Int], _ dy: NDArray, axes: [Int], mean: Bool) -> [Float] {
        let ax = Set(axes.map { $0 < 0 ? $0 + shape.count : $0 })
        var reduced = 1
        for d in ax { reduced *= shape[d] }
        let n = shape.reduce(1, *)
        var dx = [Float](repeating: 0, count: n)
        for k in 0..<n {
            var r = k
            var idx = [Int](repeating: 0, count: shape.count)
            for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = r % shape[d]; r /= shape[d] }
            var o = 0
            for d in shape.indices where !ax.contains(d) { o = o * shape[d] + idx[d] }
            dx[k] = mean ? Float(Double(dy.floats[o]) / Double(reduced)) : dy.floats[o]
        }
        return dx
    }

    static let cases: [([Int], [Int]?)] = [
        ([2, 3, 4], nil), ([2, 3, 4], [0]), ([2, 3, 4], [1]), ([2, 3, 4], [2]), ([2, 3, 4], [-1]),
        ([2, 3, 4], [0, 2]), ([2, 3, 4], [0, 1]), ([2, 3, 4], [1, 2]), ([2, 3, 4], [2, 0]), ([2, 3, 4], []),
        ([2, 3, 4, 5], [0, 2]), ([2, 3, 4, 5], [1, 3]), ([2, 3, 4, 5], [0, 1, 3]), ([2, 1, 3], [1]),
        ([2, 1, 3], [0, 2]), ([5, 40], [1]), ([3, 50, 7], [1]), ([37, 3], [0]), ([7], nil), ([], nil),
        ([3, 0, 2], [0]), ([4, 1, 1, 6], [1, 2]),
    ]

    @Test(arguments: [false, true])
    func reductionsMatchNaiveReference(mean: Bool) throws {
        for (i, (shape, axes)) in Self.cases.enumerated() {
            for keep in [false, true] {
                let f: any Function = mean ? Mean(axes: axes, keepDims: keep) : Sum(axes: axes, keepDims: keep)
                let x = Harness.random(shape, seed: UInt64(10 + i))
                let all = axes ?? Array(0..<shape.count)
                let ref = Self.naive(x, axes: all, keepDims: keep, mean: mean)
                let y = try Harness.forward1(f, [x])
                #expect(y.shape == ref.shape, "\(f.typeName) \(shape) \(all) keep \(keep)")
                #expect(mismatch(y.toFloats(), ref.values, rtol: 1e-5, atol: 1e-6) == nil, "\(f.typeName) \(shape) \(all) keep \(keep)")
                let dy = Harness.random(ref.shape, seed: UInt64(50 + i))
                let dx = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
                let expected = Self.naiveBackward(shape, dy, axes: all, mean: mean)
                #expect(mismatch(dx.toFloats(), expected, rtol: 1e-6, atol: 1e-7) == nil, "\(f.typeName) backward \(shape) \(all)")
                let start = Harness.random(shape, seed: 99)
                let acc = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true], initial: [start])[0]!
                let expectedAcc = zip(expected, start.toFloats()).map { $0 + $1 }
                #expect(mismatch(acc.toFloats(), expectedAcc, rtol: 1e-6, atol: 1e-6) == nil, "\(f.typeName) accumulate \(shape) \(all)")
            }
        }
    }

    @Test func emptyReductionsGiveZeroSumAndNaNMean() throws {
        let x = Harness.random([3, 0, 2], seed: 1)
        let s = try Harness.forward1(Sum(axes: [1]), [x])
        let m = try Harness.forward1(Mean(axes: [1]), [x])
        #expect(s.shape == [3, 2])
        #expect(s.toFloats() == [Float](repeating: 0, count: 6))
        #expect(m.toFloats().allSatisfy { $0.isNaN })
    }

    @Test func reducingEveryAxisGivesAScalar() throws {
        #expect(try Sum().outputTypes([TensorType([2, 3, 4])]) == [TensorType([])])
        #expect(try Mean(axes: nil, keepDims: true).outputTypes([TensorType([2, 3, 4])]) == [TensorType([1, 1, 1])])
        #expect(try Sum(axes: [-1, 0]).outputTypes([TensorType([2, 3, 4])]) == [TensorType([3])])
        let x = try Variable(shape: [2, 3])
        let y = try F.mean(x)
        #expect(y.shape == [])
        #expect((y.parent?.function as? Mean)?.axes == [0, 1])
        var r = ArgReader(function: "Sum", values: [:])
        let f = try Sum(arguments: &r)
        #expect(f.axes == nil && !f.keepDims)
        #expect(f.arguments.map { $0.0 } == ["keep_dims"])
        #expect(Sum(axes: [1], keepDims: true).arguments.map { $0.0 } == ["axes", "keep_dims"])
    }

    @Test func reductionGradientsMatchFiniteDifferences() throws {
        for (shape, axes) in [([2, 3, 4], [1]), ([2, 3, 4], [0, 2]), ([3, 4], nil)] as [([Int], [Int]?)] {
            for f in [Sum(axes: axes), Mean(axes: axes, keepDims: true)] as [any Function] {
                let x = Harness.random(shape, seed: 5)
                let dy = Harness.random(try f.outputTypes([x.type])[0].shape, seed: 6)
                let dx = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
                let num = try Harness.numericalGradient(f, inputs: [x], outputGrads: [dy], index: 0)
                #expect(mismatch(dx.toFloats(), num, rtol: 1e-2, atol: 2e-3) == nil, "\(f.typeName) \(shape) \(axes ?? [])")
            }
        }
    }

    @Test func reductionErrors() throws {
        let x = TensorType([2, 3, 4])
        for mean in [false, true] {
            func make(_ axes: [Int]?) -> any Function { mean ? Mean(axes: axes) : Sum(axes: axes) }
            #expect(throws: KilnError.self) { try make([3]).outputTypes([x]) }
            #expect(throws: KilnError.self) { try make([-4]).outputTypes([x]) }
            #expect(throws: KilnError.self) { try make([0, 0]).outputTypes([x]) }
            #expect(throws: KilnError.self) { try make([1, -2]).outputTypes([x]) } // the same axis twice
            #expect(throws: KilnError.self) { try make(nil).outputTypes([TensorType([2, 3], .int32)]) }
            #expect(throws: KilnError.self) { try make(nil).outputTypes([x, x]) }
        }
        #expect(throws: KilnError.self) { try FunctionRegistry.make(type: "Sum", arguments: ["axes": .string("0")]) }
    }
}
