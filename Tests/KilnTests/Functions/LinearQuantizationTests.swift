import Foundation
import Testing
@testable import Kiln
@testable import KilnGraph

/// QuantizeLinear and DequantizeLinear against values the real nnabla 1.39 computed for these inputs (rounding
/// modes, saturation to int8/uint8 with and without narrow_range, the zero point rounded and saturated,
/// per-channel broadcasting) and its gradients (`dx = dy / scale`, `dx = dy * scale`).
struct LinearQuantizationTests {
    static func quantize(_ xs: [Float], scale: [Float] = [1], zero: Float = 0, shape: [Int]? = nil,
                         _ f: QuantizeLinear) throws -> [Float] {
        let shape = shape ?? [xs.count]
        var scaleShape = [Int](repeating: 1, count: shape.count)
        if scale.count > 1 { scaleShape[1] = scale.count }
        let ins = [try Harness.floats(shape, xs), try Harness.floats(scaleShape, scale),
                   try Harness.floats([Int](repeating: 1, count: shape.count), [zero])]
        return try Harness.forward1(f, ins).toFloats()
    }

    static let xs: [Float] = [0.5, 1.5, 2.5, -0.5, -1.5, 300, -300, 2.4]

    @Test func roundingModesAndRanges() throws {
        #expect(try Self.quantize(Self.xs, QuantizeLinear(roundMode: "HALF_TO_EVEN", dtype: 2)) == [0, 2, 2, 0, 0, 255, 0, 2])
        #expect(try Self.quantize(Self.xs, QuantizeLinear()) == [1, 2, 3, -1, -2, 127, -128, 2])
        #expect(try Self.quantize(Self.xs, QuantizeLinear(narrowRange: true)) == [1, 2, 3, -1, -2, 127, -127, 2])
        // uint8 with narrow_range: the zero point 0 is itself saturated to 1 first.
        #expect(try Self.quantize(Self.xs, QuantizeLinear(narrowRange: true, dtype: 2)) == [2, 3, 4, 1, 1, 255, 1, 3])
    }

    /// Random values, halfway cases, huge values and NaN against the definition written with the standard
    /// library's rounding (Kiln's kernel rounds without a library call).
    @Test(arguments: [false, true])
    func matchesTheDefinition(halfToEven: Bool) throws {
        var rng = SplitMix64(seed: 4)
        var xs = (0..<500).map { _ in Float.random(in: -60...60, using: &rng) }
        xs += (0..<100).map { Float($0 - 50) * 0.25 }          // halfway values at scale 0.5
        xs += [0.49999997 * 0.5, -0.49999997 * 0.5, 1e30, -1e30, .infinity, -.infinity, 0, -0.0]
        for (signed, zero) in [(true, Float(-3)), (false, Float(17))] {
            let f = QuantizeLinear(roundMode: halfToEven ? "HALF_TO_EVEN" : "HALF_AWAY_FROM_ZERO", dtype: signed ? 1 : 2)
            let (lo, hi) = (Float(f.range.min), Float(f.range.max))
            let got = try Self.quantize(xs + [.nan], scale: [0.5], zero: zero, f)
            let want = xs.map { x -> Float in
                let r = (x / 0.5).rounded(halfToEven ? .toNearestOrEven : .toNearestOrAwayFromZero) + zero
                return Swift.min(Swift.max(r, lo), hi)
            }
            #expect(Array(got.dropLast()) == want, "signed \(signed)")
            #expect(got.last?.isNaN == true, "NaN stays NaN, as in nnabla")
        }
    }

    @Test func zeroPointIsRoundedAndSaturated() throws {
        #expect(try Self.quantize([1], scale: [0.5], zero: 3.6, QuantizeLinear()) == [6])
        #expect(try Self.quantize([1], scale: [0.5], zero: 300, QuantizeLinear(dtype: 2)) == [255])
    }

    @Test func perChannelAndGradients() throws {
        let f = QuantizeLinear(dtype: 2)
        #expect(try Self.quantize([1, 2, 3, 4], scale: [1, 0.5], zero: 10, shape: [1, 2, 2], f) == [11, 12, 16, 18])
        let scale = try Harness.floats([1, 2, 1], [1, 0.5]), zero = try Harness.floats([1, 1, 1], [10])
        let codes = try Harness.floats([1, 2, 2], [11, 12, 16, 18])
        #expect(try Harness.forward1(DequantizeLinear(), [codes, scale, zero]).toFloats() == [1, 2, 3, 4])
        let ones = try Harness.floats([1, 2, 2], [1, 1, 1, 1])
        let dq = try Harness.backward(DequantizeLinear(), inputs: [codes, scale, zero], outputGrads: [ones], want: [true, false, false])
        #expect(dq[0]?.toFloats() == [1, 1, 0.5, 0.5])
        let x = try Harness.floats([1, 2, 2], [1, 2, 3, 4])
        let q = try Harness.backward(f, inputs: [x, scale, zero], outputGrads: [ones], want: [true, false, false])
        #expect(q[0]?.toFloats() == [1, 1, 2, 2])
    }

    @Test func badArgumentsAreErrors() throws {
        let x = TensorType([2, 3], .float32), one = TensorType([1, 1], .float32)
        #expect(throws: KilnError.self) { try QuantizeLinear(dtype: 3).outputTypes([x, one, one]) }
        #expect(throws: KilnError.self) { try QuantizeLinear(roundMode: "UP").outputTypes([x, one, one]) }
        #expect(throws: KilnError.self) { try DequantizeLinear().outputTypes([x, TensorType([1], .float32), one]) }
        #expect(throws: KilnError.self) { try DequantizeLinear().outputTypes([x, TensorType([1, 2], .float32), one]) }
        let scale = try Harness.floats([1, 1], [1]), zero = try Harness.floats([1, 1], [0])
        #expect(throws: KilnError.self) {
            _ = try Harness.backward(DequantizeLinear(), inputs: [try Harness.floats([2, 3], [Float](repeating: 1, count: 6)), scale, zero],
                                     outputGrads: [try Harness.floats([2, 3], [Float](repeating: 1, count: 6))], want: [true, true, false])
        }
    }
}
