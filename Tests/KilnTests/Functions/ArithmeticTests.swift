import Foundation
import Testing
@testable import Kiln

/// Add2/Sub2/Mul2/Div2 (broadcasting) and the scalar operations against naive references and finite
/// differences.
struct ArithmeticTests {
    // MARK: - Naive broadcasting reference

    /// Multi-index of flat position `k` in `shape`.
    static func index(_ k: Int, _ shape: [Int]) -> [Int] {
        var idx = [Int](repeating: 0, count: shape.count)
        var r = k
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            idx[d] = r % shape[d]
            r /= shape[d]
        }
        return idx
    }

    /// Flat position of the element of `shape` that a broadcast output index reads (size-1 dims read 0).
    static func flat(_ idx: [Int], _ shape: [Int]) -> Int {
        var k = 0
        for d in shape.indices { k = k * shape[d] + (shape[d] == 1 ? 0 : idx[d]) }
        return k
    }

    static func outShape(_ a: [Int], _ b: [Int]) -> [Int] {
        zip(a, b).map { $0 == 1 ? $1 : $0 }
    }

    /// Forward and vector-Jacobian products with plain loops over the output; gradients summed in Double.
    static func naive(_ op: String, _ a: NDArray, _ b: NDArray, _ dy: NDArray)
        -> (y: [Float], da: [Float], db: [Float]) {
        let so = outShape(a.shape, b.shape)
        let n = so.reduce(1, *)
        var y = [Float](repeating: 0, count: n)
        var da = [Double](repeating: 0, count: a.count), db = [Double](repeating: 0, count: b.count)
        for k in 0..<n {
            let idx = index(k, so)
            let ia = flat(idx, a.shape), ib = flat(idx, b.shape)
            let x0 = a.floats[ia], x1 = b.floats[ib], g = Double(dy.floats[k])
            switch op {
            case "add": y[k] = x0 + x1; da[ia] += g; db[ib] += g
            case "sub": y[k] = x0 - x1; da[ia] += g; db[ib] -= g
            case "mul": y[k] = x0 * x1; da[ia] += g * Double(x1); db[ib] += g * Double(x0)
            default:
                y[k] = x0 / x1
                da[ia] += g / Double(x1)
                db[ib] += -g * Double(x0) / (Double(x1) * Double(x1))
            }
        }
        return (y, da.map(Float.init), db.map(Float.init))
    }

    static func function(_ op: String) -> any Function {
        switch op {
        case "add": return Add2()
        case "sub": return Sub2()
        case "mul": return Mul2()
        default: return Div2()
        }
    }

    /// Divisors kept away from 0.
    static func divisor(_ shape: [Int], seed: UInt64) -> NDArray {
        let x = Harness.random(shape, seed: seed, in: 0.5...2)
        for i in 0..<x.count where i % 3 == 1 { x.floats[i] = -x.floats[i] }
        return x
    }

    static let shapePairs: [([Int], [Int])] = [
        ([3, 4], [3, 4]), ([2, 1, 4], [1, 3, 1]), ([3, 1], [1, 4]), ([1, 1], [3, 4]), ([2, 3, 4], [1, 1, 1]),
        ([2, 3, 1, 5], [1, 3, 4, 1]), ([4, 3], [4, 1]), ([1, 5, 1], [2, 5, 3]), ([2, 3, 40], [2, 1, 40]),
        ([0, 3], [1, 3]),
    ]

    @Test(arguments: ["add", "sub", "mul", "div"])
    func binaryMatchesNaiveBroadcastingReference(op: String) throws {
        for (i, (sa, sb)) in Self.shapePairs.enumerated() {
            let a = Harness.random(sa, seed: UInt64(100 + i), in: -2...2)
            let b = op == "div" ? Self.divisor(sb, seed: UInt64(200 + i)) : Harness.random(sb, seed: UInt64(200 + i), in: -2...2)
            let so = Self.outShape(sa, sb)
            let dy = Harness.random(so, seed: UInt64(300 + i))
            let f = Self.function(op)
            let ref = Self.naive(op, a, b, dy)
            let y = try Harness.forward1(f, [a, b])
            #expect(y.shape == so)
            #expect(y.toFloats() == ref.y, "\(op) \(sa) \(sb) forward")
            let g = try Harness.backward(f, inputs: [a, b], outputGrads: [dy], want: [true, true])
            #expect(mismatch(g[0]!.toFloats(), ref.da, rtol: 1e-5, atol: 1e-5) == nil, "\(op) \(sa) \(sb) d x0")
            #expect(mismatch(g[1]!.toFloats(), ref.db, rtol: 1e-5, atol: 1e-5) == nil, "\(op) \(sa) \(sb) d x1")
            // accumulate path, and one gradient at a time
            let sa0 = Harness.random(sa, seed: 7), sb0 = Harness.random(sb, seed: 8)
            let acc = try Harness.backward(f, inputs: [a, b], outputGrads: [dy], want: [true, true], initial: [sa0, sb0])
            #expect(mismatch(acc[0]!.toFloats(), zip(ref.da, sa0.toFloats()).map { $0 + $1 }, rtol: 1e-5, atol: 1e-5) == nil)
            #expect(mismatch(acc[1]!.toFloats(), zip(ref.db, sb0.toFloats()).map { $0 + $1 }, rtol: 1e-5, atol: 1e-5) == nil)
            let only1 = try Harness.backward(f, inputs: [a, b], outputGrads: [dy], want: [false, true])
            #expect(only1[0] == nil)
            #expect(mismatch(only1[1]!.toFloats(), ref.db, rtol: 1e-5, atol: 1e-5) == nil)
        }
    }

    @Test(arguments: ["add", "sub", "mul", "div"])
    func binaryGradientsMatchFiniteDifferences(op: String) throws {
        for (i, (sa, sb)) in [([2, 3], [2, 3]), ([2, 1, 3], [1, 4, 1]), ([3, 4], [1, 4])].enumerated() {
            let a = Harness.random(sa, seed: UInt64(400 + i), in: -2...2)
            let b = op == "div" ? Self.divisor(sb, seed: UInt64(500 + i)) : Harness.random(sb, seed: UInt64(500 + i), in: -2...2)
            let f = Self.function(op)
            let dy = Harness.random(try f.outputTypes([a.type, b.type])[0].shape, seed: UInt64(600 + i))
            let g = try Harness.backward(f, inputs: [a, b], outputGrads: [dy], want: [true, true])
            for k in 0..<2 {
                let num = try Harness.numericalGradient(f, inputs: [a, b], outputGrads: [dy], index: k)
                let m = mismatch(g[k]!.toFloats(), num, rtol: 1e-2, atol: 2e-3)
                #expect(m == nil, "\(op) \(sa) \(sb) input \(k): \(m ?? "")")
            }
        }
    }

    /// mul2(x, x): both gradients are the same buffer, overwritten by input 0 and accumulated by input 1.
    @Test func mul2OfTheSameVariableAccumulatesIntoOneBuffer() throws {
        let x = Harness.random([3, 5], seed: 70)
        let dy = Harness.random([3, 5], seed: 71)
        let f = Mul2()
        let y = try Harness.forward1(f, [x, x])
        #expect(y.toFloats() == x.toFloats().map { $0 * $0 })
        let g = NDArray(validated: x.type)
        try g.fill(.nan)
        let t = Harness.tensor(x)
        let b = BackwardBinding(inputTypes: [x.type, x.type], outputTypes: [y.type], inputs: [t, t], outputs: [nil],
                                outputGrads: [Harness.tensor(dy)], inputGrads: [Harness.tensor(g), Harness.tensor(g)],
                                accumulate: [false, true], workspace: nil)
        try f.makeBackward(b)()
        let expected = zip(x.toFloats(), dy.toFloats()).map { 2 * $0 * $1 }
        #expect(mismatch(g.toFloats(), expected, rtol: 1e-6, atol: 1e-7) == nil)
    }

    @Test func addAndSubDoNotReadInputs() {
        #expect(Add2().backwardReads(inputCount: 2, outputCount: 1).inputs == [false, false])
        #expect(Sub2().backwardReads(inputCount: 2, outputCount: 1).inputs == [false, false])
        #expect(Mul2().backwardReads(inputCount: 2, outputCount: 1).inputs == [true, true])
    }

    // MARK: - Scalar operations

    @Test func scalarOperationsMatchNaiveReferences() throws {
        let x = Harness.random([3, 4], seed: 80, in: 0.2...3) // positive: pow with fractional exponents
        let dy = Harness.random([3, 4], seed: 81)
        let xs = x.toFloats(), gs = dy.toFloats()
        let cases: [(any Function, (Float) -> Float, (Float, Float) -> Float)] = [
            (AddScalar(val: 1.5), { $0 + 1.5 }, { g, _ in g }),
            (MulScalar(val: -2.5), { $0 * -2.5 }, { g, _ in g * -2.5 }),
            (PowScalar(val: 2), { $0 * $0 }, { g, v in g * 2 * v }),
            (PowScalar(val: 1.5), { Float(Foundation.pow(Double($0), 1.5)) }, { g, v in Float(Double(g) * 1.5 * Double(v).squareRoot()) }),
            (PowScalar(val: -1), { 1 / $0 }, { g, v in -g / (v * v) }),
            (RSubScalar(val: 3), { 3 - $0 }, { g, _ in -g }),
            (RDivScalar(val: 2), { 2 / $0 }, { g, v in -2 * g / (v * v) }),
        ]
        for (f, fwd, bwd) in cases {
            let y = try Harness.forward1(f, [x])
            #expect(mismatch(y.toFloats(), xs.map(fwd), rtol: 1e-6, atol: 1e-7) == nil, "\(f.typeName) \(f.arguments)")
            let dx = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
            #expect(mismatch(dx.toFloats(), zip(gs, xs).map(bwd), rtol: 1e-5, atol: 1e-6) == nil, "\(f.typeName) \(f.arguments) backward")
            let start = Harness.random([3, 4], seed: 82)
            let acc = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true], initial: [start])[0]!
            #expect(mismatch(acc.toFloats(), zip(dx.toFloats(), start.toFloats()).map { $0 + $1 }, rtol: 1e-6, atol: 1e-6) == nil)
            let num = try Harness.numericalGradient(f, inputs: [x], outputGrads: [dy], index: 0)
            #expect(mismatch(dx.toFloats(), num, rtol: 1e-2, atol: 5e-3) == nil, "\(f.typeName) finite differences")
        }
    }

    @Test func scalarDefaultsFollowNnabla() throws {
        for t in ["AddScalar", "MulScalar", "PowScalar"] {
            let f = try FunctionRegistry.make(type: t, arguments: [:])
            #expect(f.arguments.map { $0.0 } == ["val", "inplace"])
            #expect(f.arguments[0].1 == .double(1))
        }
        // pow_scalar's default val = 1 is the identity with gradient dy
        let x = Harness.random([5], seed: 90, in: 0.5...2)
        #expect(try Harness.forward1(PowScalar(), [x]).toFloats() == x.toFloats())
    }

    // MARK: - Errors and API

    @Test func binaryErrors() throws {
        for f in [Add2(), Sub2(), Mul2(), Div2()] as [any Function] {
            // same ndim is required in nnabla 1.39
            #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2, 3, 4]), TensorType([3, 4])]) }
            // 2 vs 3 cannot broadcast
            #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2, 3]), TensorType([3, 3])]) }
            #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2, 3], .int32), TensorType([2, 3])]) }
            #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2, 3]), TensorType([2, 3], .int32)]) }
            #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2, 3])]) }
            #expect(try f.outputTypes([TensorType([2, 1]), TensorType([1, 3])]) == [TensorType([2, 3])])
        }
        for f in [AddScalar(), MulScalar(), PowScalar(), RSubScalar(), RDivScalar()] as [any Function] {
            #expect(throws: KilnError.self) { try f.outputTypes([TensorType([2], .int32)]) }
        }
        #expect(throws: KilnError.self) { try FunctionRegistry.make(type: "Add2", arguments: ["alpha": .int(1)]) }
    }

    @Test func operatorsBuildTheMatchingFunctions() throws {
        let a = try Variable(shape: [2, 3]), b = try Variable(shape: [1, 3])
        let checks: [(Variable, String, Double?)] = [
            (try a + b, "Add2", nil), (try a - b, "Sub2", nil), (try a * b, "Mul2", nil), (try a / b, "Div2", nil),
            (try a + 2, "AddScalar", 2), (try 2 + a, "AddScalar", 2), (try a - 2, "AddScalar", -2),
            (try 2 - a, "RSubScalar", 2), (try a * 3, "MulScalar", 3), (try 3 * a, "MulScalar", 3),
            (try a / 4, "MulScalar", 0.25), (try 4 / a, "RDivScalar", 4), (try -a, "MulScalar", -1),
        ]
        for (v, type, val) in checks {
            #expect(v.shape == [2, 3])
            #expect(v.parent?.function.typeName == type)
            if let val { #expect(v.parent?.function.arguments.first?.1 == .double(val)) }
        }
        #expect(throws: KilnError.self) { try a + (try Variable(shape: [3])) }
    }
}
