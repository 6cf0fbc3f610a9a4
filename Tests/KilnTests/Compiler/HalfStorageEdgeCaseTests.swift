import Testing
@testable import Kiln

/// Half-precision plans on the step shapes staging has to get right: one buffer in several slots of a step,
/// gradients added into a float16 buffer (loaded before the kernel), Zero steps on float16 gradients,
/// functions writing an input (training BN), clear_buffer off, and `.d` / `.g` read from the float16 arena.
/// Expected values: the float32 plan of the same graph, within float16 rounding.
struct HalfStorageEdgeCaseTests {
    static func run(_ loss: Variable, _ params: [Variable], _ opts: CompileOptions) throws -> (Float, [[Float]]) {
        let exe = try Compiler.compile(loss, .training, options: opts)
        try exe.plan.verify()
        for p in params { p.zeroGrad() }
        try exe.run()
        return (loss.d[0], params.map { $0.g })
    }
    static func compare(_ name: String, _ loss: Variable, _ params: [Variable]) throws {
        let f = try run(loss, params, CompileOptions())
        for opts in [CompileOptions(precision: .half), CompileOptions(clearBuffer: false, clearNoNeedGrad: false, precision: .half)] {
            let h = try run(loss, params, opts)
            #expect(abs(h.0 - f.0) <= 1e-2 * max(1, abs(f.0)), "\(name) loss \(h.0) vs \(f.0)")
            for (a, b) in zip(h.1, f.1) {
                for (u, v) in zip(a, b) { #expect(abs(u - v) <= 1e-2 * max(1, abs(v)), "\(name) grad \(u) vs \(v)"); if abs(u - v) > 1e-2 * max(1, abs(v)) { break } }
            }
        }
    }
    static func param(_ shape: [Int], _ seed: UInt64) throws -> Variable {
        let v = try Variable(shape: shape, needGrad: true)
        var rng = SplitMix64(seed: seed)
        try v.setData((0..<v.size).map { _ in Float.random(in: -1...1, using: &rng) })
        return v
    }
    @Test func sameBufferTwoSlots() throws {
        let x = try Self.param([16], 1), w = try Self.param([16], 2)
        let h = try F.mul2(x, w)
        let l0 = try F.sum(try F.mul2(h, h))
        _ = try Self.run(l0, [x, w], CompileOptions())
        let wg = w.g
        let expect = zip(x.d, w.d).map { 2 * $0 * $1 * $0 }
        for (a, b) in zip(wg, expect) { #expect(abs(a - b) < 1e-4, "analytic \(a) \(b)") }
        try Self.compare("mul2(h,h)", l0, [x, w])
        let h2 = try F.tanh(try F.mul2(x, w))
        try Self.compare("accumulate", try F.sum(try F.add2(try F.mulScalar(h2, val: 2), try F.sigmoid(h2))), [x, w])
        let h3 = try F.mul2(x, w)
        try Self.compare("concat", try F.sum(try F.mul2(try F.concatenate([h3, h3], axis: 0), try Self.param([32], 5))), [x, w])
    }
    @Test func splitUnusedOutput() throws {
        let x = try Self.param([2, 8], 3), w = try Self.param([2, 8], 4)
        let parts = try F.split(try F.mul2(x, w), axis: 0)
        try Self.compare("split", try F.sum(try F.tanh(parts[0])), [x, w])
    }
    @Test func batchNormTraining() throws {
        let x = try Self.param([4, 3, 2, 2], 5), w = try Self.param([4, 3, 2, 2], 6)
        let beta = try Self.param([1, 3, 1, 1], 7), gamma = try Self.param([1, 3, 1, 1], 8)
        let m = try Variable(shape: [1, 3, 1, 1]), v = try Variable(shape: [1, 3, 1, 1])
        try v.setData([1, 1, 1] as [Float])
        let y = try F.batchNormalization(try F.mul2(x, w), beta, gamma, m, v, batchStat: true)
        try Self.compare("bn", try F.sum(try F.mul2(y, y)), [x, w, beta, gamma])
    }
    @Test func intermediateReads() throws {
        let x = try Self.param([16], 1), w = try Self.param([16], 2)
        let h = try F.mul2(x, w)
        let t = try F.tanh(h)
        let loss = try F.sum(try F.mulScalar(t, val: 3))
        let exe = try Compiler.compile(loss, .training, options: CompileOptions(clearBuffer: false, clearNoNeedGrad: false, precision: .half))
        try exe.run()
        let expected = zip(x.d, w.d).map { Float(Float16($0 * $1)) }
        #expect(h.d == expected)
        #expect(t.g.allSatisfy { $0 == 3 })
    }
}
