import Testing
@testable import Kiln

/// Reshape, Transpose, Concatenate, Split and Slice against plain-loop references and finite differences.
struct ShapeOpTests {
    // MARK: - reference helpers (independent of the kernels)

    /// Row-major flat index of a multi-index.
    static func flat(_ idx: [Int], _ shape: [Int]) -> Int {
        var f = 0
        for d in 0..<shape.count { f = f * shape[d] + idx[d] }
        return f
    }

    /// Every multi-index of `shape` in row-major order.
    static func indices(_ shape: [Int]) -> [[Int]] {
        var out: [[Int]] = []
        let n = shape.reduce(1, *)
        for k in 0..<n {
            var rem = k
            var idx = [Int](repeating: 0, count: shape.count)
            for d in stride(from: shape.count - 1, through: 0, by: -1) {
                idx[d] = rem % shape[d]
                rem /= shape[d]
            }
            out.append(idx)
        }
        return out
    }

    static func gradCheck(_ f: any Function, _ inputs: [NDArray], index: Int, outputShapes: [[Int]],
                          seed: UInt64 = 99) throws -> String? {
        let dys = outputShapes.enumerated().map { Harness.random($1, seed: seed + UInt64($0)) }
        var want = [Bool](repeating: false, count: inputs.count)
        want[index] = true
        let g = try Harness.backward(f, inputs: inputs, outputGrads: dys, want: want)[index]!
        let num = try Harness.numericalGradient(f, inputs: inputs, outputGrads: dys, index: index)
        return mismatch(g.toFloats(), num, rtol: 1e-2, atol: 1e-3)
    }

    // MARK: - Reshape

    @Test func reshapeKeepsRowMajorOrderAndInfersMinusOne() throws {
        let x = Harness.random([2, 3, 4], seed: 1)
        let y = try Harness.forward1(Reshape(shape: [4, -1]), [x])
        #expect(y.shape == [4, 6])
        #expect(y.toFloats() == x.toFloats())
        let z = try Harness.forward1(Reshape(shape: [-1]), [x])
        #expect(z.shape == [24])
        let s = try Harness.forward1(Reshape(shape: []), [Harness.random([1, 1], seed: 2)])
        #expect(s.shape == [])
        // int32 labels can be reshaped too
        let labels = try Harness.ints([2, 2], [1, 2, 3, 4])
        let l = try Harness.forward1(Reshape(shape: [4, 1]), [labels])
        #expect(try l.dtype == .int32 && l.toInt32s() == [1, 2, 3, 4])
    }

    @Test func reshapeGradient() throws {
        let x = Harness.random([3, 4], seed: 3)
        #expect(try Self.gradCheck(Reshape(shape: [2, 6]), [x], index: 0, outputShapes: [[2, 6]]) == nil)
        let dy = Harness.random([2, 6], seed: 4)
        let start = Harness.random([3, 4], seed: 5)
        let g = try Harness.backward(Reshape(shape: [2, 6]), inputs: [x], outputGrads: [dy], want: [true],
                                     initial: [start])[0]!
        #expect(g.toFloats() == zip(start.toFloats(), dy.toFloats()).map { $0 + $1 })
    }

    @Test func reshapeRejectsBadShapes() throws {
        let t = TensorType([2, 3, 4])
        #expect(throws: KilnError.self) { try Reshape(shape: [5, 5]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Reshape(shape: [-1, -1]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Reshape(shape: [5, -1]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Reshape(shape: [-2, 12]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Reshape(shape: [24]).outputTypes([TensorType([24], .float16)]) }
        var r = ArgReader(function: "Reshape", values: [:])
        #expect(throws: KilnError.self) { try Reshape(arguments: &r) }
    }

    // MARK: - Transpose

    static func naiveTranspose(_ x: NDArray, _ axes: [Int]) -> (shape: [Int], values: [Float]) {
        let outShape = axes.map { x.shape[$0] }
        var values: [Float] = []
        for o in indices(outShape) {
            var i = [Int](repeating: 0, count: axes.count)
            for d in 0..<axes.count { i[axes[d]] = o[d] }
            values.append(x.floats[flat(i, x.shape)])
        }
        return (outShape, values)
    }

    @Test(arguments: [
        ([2, 3, 4], [2, 0, 1]), ([2, 3, 4, 5], [3, 1, 0, 2]), ([3, 40, 50], [0, 2, 1]),
        ([37, 45], [1, 0]), ([2, 1, 9, 33], [0, 3, 2, 1]), ([4, 5], [0, 1]),
    ])
    func transposeMatchesNaiveReference(_ shape: [Int], _ axes: [Int]) throws {
        let x = Harness.random(shape, seed: UInt64(shape.reduce(0, +)))
        let y = try Harness.forward1(Transpose(axes: axes), [x])
        let ref = Self.naiveTranspose(x, axes)
        #expect(y.shape == ref.shape)
        #expect(y.toFloats() == ref.values)
        // Backward is the inverse transpose, accumulated onto a start value.
        let dy = Harness.random(ref.shape, seed: 8)
        let start = Harness.random(shape, seed: 9)
        let g = try Harness.backward(Transpose(axes: axes), inputs: [x], outputGrads: [dy], want: [true],
                                     initial: [start])[0]!
        var inverse = [Int](repeating: 0, count: axes.count)
        for (d, a) in axes.enumerated() { inverse[a] = d }
        let back = Self.naiveTranspose(dy, inverse)
        #expect(g.toFloats() == zip(start.toFloats(), back.values).map { $0 + $1 })
    }

    @Test func transposeGradient() throws {
        let x = Harness.random([2, 3, 4], seed: 10)
        #expect(try Self.gradCheck(Transpose(axes: [1, 2, 0]), [x], index: 0, outputShapes: [[3, 4, 2]]) == nil)
    }

    @Test func transposeRejectsBadPermutations() throws {
        let t = TensorType([2, 3, 4])
        #expect(throws: KilnError.self) { try Transpose(axes: [0, 1]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Transpose(axes: [0, 1, 1]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Transpose(axes: [0, 1, 3]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Transpose(axes: [0, 1, 2, 3]).outputTypes([t]) }
    }

    // MARK: - Concatenate

    static func naiveConcatenate(_ xs: [NDArray], axis: Int) -> (shape: [Int], values: [Float]) {
        var shape = xs[0].shape
        shape[axis] = xs.reduce(0) { $0 + $1.shape[axis] }
        var values: [Float] = []
        for o in indices(shape) {
            var k = 0, pos = o[axis]
            while pos >= xs[k].shape[axis] { pos -= xs[k].shape[axis]; k += 1 }
            var i = o
            i[axis] = pos
            values.append(xs[k].floats[flat(i, xs[k].shape)])
        }
        return (shape, values)
    }

    @Test(arguments: [0, 1, 2])
    func concatenateMatchesNaiveReference(_ axis: Int) throws {
        var shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
        for (k, extra) in [1, 3, 2].enumerated() { shapes[k][axis] = extra }
        let xs = shapes.enumerated().map { Harness.random($1, seed: UInt64(20 + $0)) }
        let f = Concatenate(axis: axis)
        let y = try Harness.forward1(f, xs)
        let ref = Self.naiveConcatenate(xs, axis: axis)
        #expect(y.shape == ref.shape)
        #expect(y.toFloats() == ref.values)
        for i in 0..<3 {
            #expect(try Self.gradCheck(f, xs, index: i, outputShapes: [ref.shape]) == nil)
        }
    }

    @Test func concatenateDefaultsToLastAxis() throws {
        let xs = [Harness.random([2, 2], seed: 30), Harness.random([2, 3], seed: 31)]
        let y = try Harness.forward1(Concatenate(), xs)
        #expect(y.shape == [2, 5])
        #expect(y.toFloats() == Self.naiveConcatenate(xs, axis: 1).values)
        let v = try F.concatenate([try Variable(xs[0]), try Variable(xs[1])])
        #expect(v.shape == [2, 5])
        let g = try F.concatenate([try Variable(xs[0]), try Variable(xs[0])], axis: 0)
        #expect(g.shape == [4, 2])
    }

    @Test func concatenateRejectsMismatches() throws {
        #expect(throws: KilnError.self) { try Concatenate(axis: 1).outputTypes([TensorType([2, 3]), TensorType([3, 3])]) }
        #expect(throws: KilnError.self) { try Concatenate(axis: 1).outputTypes([TensorType([2, 3]), TensorType([2, 3, 1])]) }
        #expect(throws: KilnError.self) { try Concatenate(axis: 2).outputTypes([TensorType([2, 3]), TensorType([2, 3])]) }
        #expect(throws: KilnError.self) { try Concatenate(axis: 0).outputTypes([TensorType([2, 3]), TensorType([2, 3], .int32)]) }
        #expect(throws: KilnError.self) { try Concatenate(axis: 0).outputTypes([]) }
    }

    // MARK: - Split

    @Test(arguments: [0, 1, 2, -1])
    func splitMatchesNaiveReference(_ axis: Int) throws {
        let shape = [3, 2, 4]
        let ax = axis < 0 ? axis + 3 : axis
        let x = Harness.random(shape, seed: 40)
        let f = Split(axis: axis)
        let ys = try Harness.forward(f, [x]).outputs
        #expect(ys.count == shape[ax])
        var outShape = shape
        outShape.remove(at: ax)
        for (j, y) in ys.enumerated() {
            #expect(y.shape == outShape)
            var expected: [Float] = []
            for o in Self.indices(outShape) {
                var i = o
                i.insert(j, at: ax)
                expected.append(x.floats[Self.flat(i, shape)])
            }
            #expect(y.toFloats() == expected)
        }
        let shapes = [[Int]](repeating: outShape, count: shape[ax])
        #expect(try Self.gradCheck(f, [x], index: 0, outputShapes: shapes) == nil)
    }

    @Test func splitApiAndErrors() throws {
        let x = try Variable(shape: [2, 5])
        let parts = try F.split(x, axis: 1)
        #expect(parts.count == 5 && parts.allSatisfy { $0.shape == [2] })
        #expect(throws: KilnError.self) { try Split(axis: 2).outputTypes([TensorType([2, 5])]) }
        #expect(throws: KilnError.self) { try Split(axis: 0).outputTypes([TensorType([])]) }
        #expect(throws: KilnError.self) { try Split(axis: 0).outputTypes([TensorType([2]), TensorType([2])]) }
    }

    // MARK: - Slice

    /// Gathers `x[i0 list][i1 list]...` with explicit per-axis index lists.
    static func gather(_ x: NDArray, _ lists: [[Int]]) -> [Float] {
        let outShape = lists.map { $0.count }
        return indices(outShape).map { o in
            x.floats[flat((0..<o.count).map { lists[$0][o[$0]] }, x.shape)]
        }
    }

    /// Cases with the per-axis index lists Python gives (worked out by hand from `slice.indices`).
    static let sliceCases: [(start: [Int], stop: [Int], step: [Int], lists: [[Int]])] = [
        ([0, 1], [2, 5], [1, 2], [[0, 1], [1, 3]]),                 // x[0:2, 1:5:2]
        ([-1, -1], [-4, -6], [-1, -1], [[2, 1, 0], [4, 3, 2, 1, 0]]), // x[-1:-4:-1, -1:-6:-1]
        ([-10, 10], [10, -10], [2, -2], [[0, 2], [4, 2, 0]]),         // out of range bounds are clamped
        ([1, 3], [1, 1], [1, 1], [[], []]),                           // empty
        ([2, 0], [0, 5], [-1, 3], [[2, 1], [0, 3]]),
    ]

    @Test(arguments: 0..<sliceCases.count)
    func sliceMatchesPythonSemantics(_ k: Int) throws {
        let c = Self.sliceCases[k]
        let x = Harness.random([3, 5], seed: 50)
        let f = Slice(start: c.start, stop: c.stop, step: c.step)
        let y = try Harness.forward1(f, [x])
        #expect(y.shape == c.lists.map { $0.count })
        #expect(y.toFloats() == Self.gather(x, c.lists))
        // Backward scatters dy to the selected positions and zeroes the rest.
        let dy = Harness.random(y.shape, seed: 51)
        let g = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
        var expected = [Float](repeating: 0, count: 15)
        for (n, o) in Self.indices(y.shape).enumerated() {
            expected[Self.flat([c.lists[0][o[0]], c.lists[1][o[1]]], [3, 5])] = dy.floats[n]
        }
        #expect(g.toFloats() == expected)
    }

    @Test func sliceGradientAndShortLists() throws {
        let x = Harness.random([2, 3, 6], seed: 52)
        let f = Slice(start: [2], stop: [-1], step: [2]) // applies to the last axis only, as in nnabla
        let y = try Harness.forward1(f, [x])
        #expect(y.shape == [2, 3, 2])
        #expect(y.toFloats() == Self.gather(x, [[0, 1], [0, 1, 2], [2, 4]]))
        #expect(try Self.gradCheck(f, [x], index: 0, outputShapes: [[2, 3, 2]]) == nil)
        let flip = Slice(start: [-1, 0, 5], stop: [-3, 3, 0], step: [-1, 2, -2])
        let yf = try Harness.forward1(flip, [x])
        #expect(yf.shape == [2, 2, 3]) // x[-1:-3:-1, 0:3:2, 5:0:-2]
        #expect(yf.toFloats() == Self.gather(x, [[1, 0], [0, 2], [5, 3, 1]]))
        #expect(try Self.gradCheck(flip, [x], index: 0, outputShapes: [yf.shape]) == nil)
    }

    @Test func sliceApiMapsNoneLikePython() throws {
        let a = Harness.random([3, 4], seed: 53)
        let x = try Variable(a)
        // x[::-1, 1:] and x[:, ::-2]
        let y = try F.slice(x, start: [nil, 1], stop: [nil, nil], step: [-1, 1])
        let f = try #require(y.parent?.function)
        #expect(y.shape == [3, 3])
        #expect(try Harness.forward1(f, [a]).toFloats() == Self.gather(a, [[2, 1, 0], [1, 2, 3]]))
        let z = try F.slice(x, step: [1, -2])
        #expect(try Harness.forward1(try #require(z.parent?.function), [a]).toFloats() == Self.gather(a, [[0, 1, 2], [3, 1]]))
        let w = try F.slice(x)
        #expect(w.shape == [3, 4])
    }

    @Test func sliceRejectsBadArguments() throws {
        let t = TensorType([3, 4])
        #expect(throws: KilnError.self) { try Slice(start: [0, 0], stop: [1, 1], step: [1, 0]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Slice(start: [0], stop: [1, 1], step: [1, 1]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Slice(start: [0, 0, 0], stop: [1, 1, 1], step: [1, 1, 1]).outputTypes([t]) }
        #expect(throws: KilnError.self) { try Slice().outputTypes([TensorType([3], .float16)]) }
    }
}
