import Foundation
import Testing
@testable import Kiln
@testable import KilnGraph

/// FixedPointQuantize and Pow2Quantize: hand-derived values (rounding, saturation, boundaries, the float32
/// details of nnabla's code) and a plain-loop reference over random data. Their gradients are straight-through
/// estimates, not derivatives, so they are checked against the STE rule instead of finite differences.
struct QuantizationTests {
    static func run(_ f: any Function, _ xs: [Float], dy: [Float]? = nil) throws -> (y: [Float], dx: [Float]) {
        let x = try Harness.floats([xs.count], xs)
        let g = try Harness.floats([xs.count], dy ?? xs.indices.map { Float($0 + 1) })
        let y = try Harness.forward1(f, [x])
        let dx = try Harness.backward(f, inputs: [x], outputGrads: [g], want: [true])[0]!
        return (y.toFloats(), dx.toFloats())
    }

    // MARK: - FixedPointQuantize

    @Test func fixedPointSignedHandCases() throws {
        // n=4, delta=0.25, signed: max = (2^3 - 1) * 0.25 = 1.75
        let f = FixedPointQuantize(sign: true, n: 4, delta: 0.25)
        let xs: [Float] = [0.125, -0.125, 0.124, 0.3, -0.37, 1.75, 1.8, -2.0, 0, 0.625, -0.625, -1.75]
        let r = try Self.run(f, xs)
        // 0.125/0.25 = 0.5 rounds away from zero; 0.625/0.25 = 2.5 -> 3 (not 2 as banker's rounding would)
        #expect(r.y == [0.25, -0.25, 0, 0.25, -0.25, 1.75, 1.75, -1.75, 0, 0.75, -0.75, -1.75])
        // gradient passes on [-1.75, 1.75], boundaries included; dy = 1, 2, 3, ...
        #expect(r.dx == [1, 2, 3, 4, 5, 6, 0, 0, 9, 10, 11, 12])
    }

    @Test func fixedPointUnsignedHandCases() throws {
        // n=4, delta=0.25, unsigned: max = (2^4 - 1) * 0.25 = 3.75, min = 0
        let f = FixedPointQuantize(sign: false, n: 4, delta: 0.25)
        let r = try Self.run(f, [-0.1, 0, 3.75, 3.9, 1.125, 0.1])
        #expect(r.y == [0, 0, 3.75, 3.75, 1.25, 0])
        #expect(r.dx == [0, 2, 3, 0, 5, 6])
    }

    /// nnabla divides in float32: 0.25 / 0.1f is exactly 2.5 in float32 (2.4999999627 in double), so it rounds
    /// up to 3 steps. 0.75 / 0.1f is 7.5 in float32 likewise.
    @Test func fixedPointDividesInFloat32() throws {
        let f = FixedPointQuantize(sign: true, n: 8, delta: 0.1)
        let r = try Self.run(f, [0.25, 0.75, -0.25])
        let d = Float(0.1)
        #expect(r.y == [3 * d, 8 * d, -3 * d])
    }

    @Test func fixedPointBoundsUseTheFloat32Delta() {
        // max = 127 * Double(Float(0.0002)) rounded to float32
        let f = FixedPointQuantize(sign: true, n: 8, delta: 0.0002)
        #expect(f.bounds.max == Float(127 * Double(Float(0.0002))))
        #expect(f.bounds.min == -f.bounds.max)
        #expect(FixedPointQuantize(sign: false, n: 8, delta: 0.0002).bounds.min == 0)
    }

    static func naiveFixedPoint(_ x: Float, sign: Bool, n: Int, delta: Double) -> Float {
        let d = Float(delta)
        let levels = sign ? (1 << (n - 1)) - 1 : (1 << n) - 1
        let hi = Float(Double(levels) * Double(d))
        let lo: Float = sign ? -hi : 0
        if x > hi { return hi }
        if x < lo { return lo }
        let steps = Foundation.floor(Double(Swift.abs(x) / d) + 0.5)
        let q = Float(steps) * d
        return x < 0 ? -q : q
    }

    @Test func fixedPointMatchesNaiveReferenceOnRandomData() throws {
        let x = Harness.random([200], seed: 3, in: -3...3)
        let dy = Harness.random([200], seed: 4)
        for sign in [true, false] {
            for n in [2, 4, 8] {
                for delta in [0.25, 0.0625, 0.01, 0.0002] {
                    let f = FixedPointQuantize(sign: sign, n: n, delta: delta)
                    let r = try Self.run(f, x.toFloats(), dy: dy.toFloats())
                    let hi = Self.naiveFixedPoint(1e30, sign: sign, n: n, delta: delta)
                    let lo = Self.naiveFixedPoint(-1e30, sign: sign, n: n, delta: delta)
                    for i in 0..<200 {
                        let v = x.floats[i]
                        #expect(r.y[i] == Self.naiveFixedPoint(v, sign: sign, n: n, delta: delta), "\(sign) \(n) \(delta) x=\(v)")
                        #expect(r.dx[i] == (v >= lo && v <= hi ? dy.floats[i] : 0))
                    }
                }
            }
        }
    }

    @Test func fixedPointOptions() throws {
        let xs: [Float] = [0.3, 9, -9, 0.01]
        // quantize=false: identity, gradient dy
        let off = try Self.run(FixedPointQuantize(quantize: false), xs)
        #expect(off.y == xs)
        #expect(off.dx == [1, 2, 3, 4])
        // ste_fine_grained=false: dy everywhere, also where saturated (default n=8, delta=0.0625: max 7.9375)
        let coarse = try Self.run(FixedPointQuantize(steFineGrained: false), xs)
        #expect(coarse.y == [0.3125, 7.9375, -7.9375, 0])
        #expect(coarse.dx == [1, 2, 3, 4])
        #expect(FixedPointQuantize(steFineGrained: false).backwardReads(inputCount: 1, outputCount: 1).inputs == [false])
        let parsed = try FunctionRegistry.make(type: "FixedPointQuantize", arguments: [:])
        #expect(parsed.arguments.map { $0.0 } == ["sign", "n", "delta", "quantize", "ste_fine_grained"])
        #expect(parsed.arguments[2].1 == .double(0.0625))
    }

    // MARK: - Pow2Quantize

    @Test func pow2SignedWithZeroHandCases() throws {
        // n=4, m=0, signed, with zero: n_eff = 2, p_max = 1, p_min = 2^(0-3) = 0.125, threshold = 2^-3.5
        let f = Pow2Quantize(sign: true, withZero: true, n: 4, m: 0)
        let xs: [Float] = [0.7, 0.75, 3, 1.4, 1.5, 0.1, 0.06, 0.09, 0.08, -0.7, 0, -3]
        let r = try Self.run(f, xs)
        // log2: -0.51 -> -1; -0.42 -> 0; 1.58 -> 2 (4 > p_max); 0.49 -> 0; 0.58 -> 1 (2 > p_max); -3.32 -> -3;
        // -4.06 -> -4 (below p_min, |x| < threshold -> 0); -3.47 -> -3; -3.64 -> -4 -> 0; 0 -> 0
        #expect(r.y == [0.5, 1, 1, 1, 1, 0.125, 0, 0.125, 0, -0.5, 0, -1])
        // the gradient is cut where 2^round(log2|x|) > p_max only (3, 1.5 and -3)
        #expect(r.dx == [1, 2, 0, 4, 0, 6, 7, 8, 9, 10, 11, 0])
    }

    @Test func pow2UnsignedHandCases() throws {
        // with zero: n_eff = 3, p_min = 2^-7, threshold = 2^-7.5; negative x -> 0 with no gradient
        let z = try Self.run(Pow2Quantize(sign: false, withZero: true, n: 4, m: 0), [-0.7, 0.7, 0.005, 0.006])
        #expect(z.y == [0, 0.5, 0, 0.0078125])
        #expect(z.dx == [0, 2, 3, 4])
        // without zero: n_eff = 4, p_min = 2^-15; negative x and tiny values -> p_min
        let p = try Self.run(Pow2Quantize(sign: false, withZero: false, n: 4, m: 0), [-0.7, 1e-6, 0, 0.3])
        let pMin: Float = 1.0 / 32768
        #expect(p.y == [pMin, pMin, pMin, 0.25])
        #expect(p.dx == [0, 2, 3, 4])
    }

    @Test func pow2FloatConstantsUnderflowAsInNnabla() throws {
        // n=8, m=1, signed, no zero: p_min = 2^-126 (FLT_MIN); a subnormal input rounds to 2^-130 -> p_min
        let tiny = Float(sign: .plus, exponent: -130, significand: 1.4) // subnormal
        let s = try Self.run(Pow2Quantize(sign: true, withZero: false, n: 8, m: 1), [tiny, -tiny, 1.9])
        #expect(s.y == [Float.leastNormalMagnitude, -Float.leastNormalMagnitude, 2])
        // n=8, m=1, unsigned, no zero: p_min = 2^-254 underflows to 0 in float32, so negatives give 0
        let u = try Self.run(Pow2Quantize(sign: false, withZero: false, n: 8, m: 1), [-0.5, 1e-30, 5])
        #expect(u.y == [0, Float(sign: .plus, exponent: -100, significand: 1), 2])
        #expect(u.dx == [0, 2, 0])
    }

    static func naivePow2(_ x: Float, sign: Bool, withZero: Bool, n: Int, m: Int) -> (Float, Float) {
        let bits = n - (sign ? 1 : 0) - (withZero ? 1 : 0)
        let pMax = Float(Foundation.pow(2.0, Double(m)))
        let pMin = Float(Foundation.pow(2.0, Double(m - ((1 << bits) - 1))))
        let threshold = Float(Double(pMin) * Foundation.pow(2.0, -0.5))
        let a = Swift.abs(x)
        let q0 = Float(Foundation.pow(2.0, Double(Foundation.log2(a).rounded())))
        var q = q0
        if q > pMax { q = pMax } else if q < pMin { q = (withZero && a < threshold) ? 0 : pMin }
        if x < 0 { q = sign ? -q : (withZero ? 0 : pMin) }
        let c: Float = (q0 > pMax || (!sign && x < 0)) ? 0 : 1
        return (q, c)
    }

    @Test func pow2MatchesNaiveReferenceOnRandomData() throws {
        let x = Harness.random([300], seed: 5, in: -4...4)
        for i in stride(from: 0, to: 300, by: 7) { x.floats[i] *= 0.001 }
        let dy = Harness.random([300], seed: 6)
        for sign in [true, false] {
            for withZero in [true, false] {
                for (n, m) in [(8, 1), (4, 0), (5, 2), (3, -1)] where n - (sign ? 1 : 0) - (withZero ? 1 : 0) > 0 {
                    let f = Pow2Quantize(sign: sign, withZero: withZero, n: n, m: m)
                    let r = try Self.run(f, x.toFloats(), dy: dy.toFloats())
                    for i in 0..<300 {
                        let (q, c) = Self.naivePow2(x.floats[i], sign: sign, withZero: withZero, n: n, m: m)
                        #expect(r.y[i] == q, "\(sign) \(withZero) \(n) \(m) x=\(x.floats[i])")
                        #expect(r.dx[i] == c * dy.floats[i])
                    }
                }
            }
        }
    }

    @Test func pow2Options() throws {
        let xs: [Float] = [0.3, 9, -9]
        let off = try Self.run(Pow2Quantize(quantize: false), xs)
        #expect(off.y == xs)
        #expect(off.dx == [1, 2, 3])
        let coarse = try Self.run(Pow2Quantize(steFineGrained: false), xs)
        #expect(coarse.y == [0.25, 2, -2])
        #expect(coarse.dx == [1, 2, 3])
        let parsed = try FunctionRegistry.make(type: "Pow2Quantize", arguments: [:])
        #expect(parsed.arguments.map { $0.0 } == ["sign", "with_zero", "n", "m", "quantize", "ste_fine_grained"])
    }

    // MARK: - Errors

    @Test func quantizerErrors() throws {
        let x = TensorType([4])
        for f in [FixedPointQuantize(n: 0), FixedPointQuantize(n: -3), FixedPointQuantize(sign: true, n: 1),
                  FixedPointQuantize(n: 33), FixedPointQuantize(delta: 0), FixedPointQuantize(delta: -0.5),
                  FixedPointQuantize(delta: .nan), FixedPointQuantize(delta: .infinity), FixedPointQuantize(delta: 1e-50),
                  Pow2Quantize(n: 0), Pow2Quantize(n: -1), Pow2Quantize(sign: true, withZero: true, n: 2)] as [any Function] {
            #expect(throws: KilnError.self, "\(f.arguments)") { try f.outputTypes([x]) }
        }
        #expect(throws: KilnError.self) { try FixedPointQuantize().outputTypes([TensorType([4], .int32)]) }
        #expect(throws: KilnError.self) { try Pow2Quantize().outputTypes([TensorType([4], .int32)]) }
        #expect(throws: KilnError.self) { try FunctionRegistry.make(type: "Pow2Quantize", arguments: ["delta": .double(1)]) }
        // the smallest valid widths
        #expect(try FixedPointQuantize(sign: false, n: 1).outputTypes([x]) == [x])
        #expect(try FixedPointQuantize(sign: true, n: 32).outputTypes([x]) == [x])
        #expect(try Pow2Quantize(sign: false, withZero: false, n: 1).outputTypes([x]) == [x])
    }
}
