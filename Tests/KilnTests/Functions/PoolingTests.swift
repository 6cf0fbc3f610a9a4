import Foundation
import Testing
@testable import Kiln

/// Max/average/global-average pooling against a naive reference that enumerates kernel offsets, finite
/// differences and argument checks.
struct PoolingTests {
    struct Config: CustomStringConvertible, Sendable {
        var shape: [Int]
        var kernel: [Int]
        var stride: [Int]
        var pad: [Int]
        var ignoreBorder: Bool
        var description: String { "x\(shape) k\(kernel) s\(stride) p\(pad) ib\(ignoreBorder)" }
    }

    static let configs: [Config] = [
        Config(shape: [2, 3, 6, 5], kernel: [3, 2], stride: [2, 1], pad: [1, 0], ignoreBorder: true),
        Config(shape: [1, 2, 7, 7], kernel: [3, 3], stride: [2, 2], pad: [1, 1], ignoreBorder: false),
        Config(shape: [1, 1, 5, 6], kernel: [2, 2], stride: [3, 3], pad: [0, 1], ignoreBorder: false),
        Config(shape: [2, 4, 5, 4], kernel: [2, 3], stride: [2, 2], pad: [0, 0], ignoreBorder: true),
        Config(shape: [1, 2, 4, 5, 5], kernel: [2, 2, 3], stride: [1, 2, 2], pad: [1, 0, 1], ignoreBorder: true),
        Config(shape: [2, 1, 3, 5, 4], kernel: [2, 3, 2], stride: [2, 2, 2], pad: [0, 1, 1], ignoreBorder: false),
        Config(shape: [2, 3, 2, 6, 6], kernel: [3, 3], stride: [2, 2], pad: [1, 1], ignoreBorder: true), // leading dims
        Config(shape: [4, 5], kernel: [2, 2], stride: [1, 2], pad: [0, 0], ignoreBorder: false),         // no batch dims
        Config(shape: [2, 3, 9], kernel: [3], stride: [2], pad: [1], ignoreBorder: true),                 // 1-D (Kiln)
        Config(shape: [2, 3, 6, 20], kernel: [2, 2], stride: [2, 2], pad: [0, 0], ignoreBorder: true),   // 2x2 tiles, 8-wide steps
        Config(shape: [1, 2, 5, 35], kernel: [2, 2], stride: [2, 2], pad: [0, 0], ignoreBorder: true),   // 2x2, odd sizes
        Config(shape: [2, 3, 8, 24], kernel: [2, 2], stride: [2, 2], pad: [0, 0], ignoreBorder: true),   // 2x2, 12-window rows
        Config(shape: [2, 3, 6, 12], kernel: [2, 2], stride: [2, 2], pad: [0, 0], ignoreBorder: true),   // 2x2, 4-wide steps
        Config(shape: [1, 2, 4, 9], kernel: [2, 2], stride: [2, 2], pad: [0, 0], ignoreBorder: true),    // 2x2, 4 windows
    ]

    /// nnabla's output size, written out per case of item 20.
    static func outSize(_ l: Int, _ k: Int, _ s: Int, _ p: Int, _ ib: Bool) -> Int {
        ib ? Int(floor(Double(l + 2 * p - k) / Double(s))) + 1 : Int(floor(Double(l + p - 1) / Double(s))) + 1
    }

    enum Kind { case max, average(includingPad: Bool) }

    /// Naive pooling: for every output, every kernel offset (row-major) maps to input coordinate
    /// `o*s - p + j`; it belongs to the padded window if `< L + p`, and is real if in `[0, L)`.
    /// Returns the output and, for max, the flat input index that wins each output.
    static func reference(_ x: NDArray, _ c: Config, _ kind: Kind) -> (y: [Float], shape: [Int], winner: [Int]) {
        let nk = c.kernel.count, r = c.shape.count
        let lead = Array(c.shape[..<(r - nk)]), spatial = Array(c.shape[(r - nk)...])
        let outSpatial = (0..<nk).map { outSize(spatial[$0], c.kernel[$0], c.stride[$0], c.pad[$0], c.ignoreBorder) }
        let maps = lead.reduce(1, *), inMap = spatial.reduce(1, *), outMap = outSpatial.reduce(1, *)
        let xs = x.toFloats()
        var y: [Float] = [], winner: [Int] = []
        func unflatten(_ i: Int, _ dims: [Int]) -> [Int] {
            var rest = i
            var out = [Int](repeating: 0, count: dims.count)
            for a in stride(from: dims.count - 1, through: 0, by: -1) { out[a] = rest % dims[a]; rest /= dims[a] }
            return out
        }
        let kernelCount = c.kernel.reduce(1, *)
        for m in 0..<maps {
            for oi in 0..<outMap {
                let o = unflatten(oi, outSpatial)
                var sum: Float = 0, padded = 0, real = 0
                var best: Float = 0, bestIndex = -1
                for ji in 0..<kernelCount {
                    let j = unflatten(ji, c.kernel)
                    let coord = (0..<nk).map { o[$0] * c.stride[$0] - c.pad[$0] + j[$0] }
                    guard (0..<nk).allSatisfy({ coord[$0] < spatial[$0] + c.pad[$0] }) else { continue }
                    padded += 1
                    guard (0..<nk).allSatisfy({ coord[$0] >= 0 && coord[$0] < spatial[$0] }) else { continue }
                    real += 1
                    var flat = 0
                    for a in 0..<nk { flat = flat * spatial[a] + coord[a] }
                    let idx = m * inMap + flat
                    sum += xs[idx]
                    if bestIndex < 0 || xs[idx] > best { best = xs[idx]; bestIndex = idx }
                }
                switch kind {
                case .max:
                    y.append(best)
                    winner.append(bestIndex)
                case .average(let includingPad):
                    y.append(sum / Float(includingPad ? padded : real))
                }
            }
        }
        return (y, lead + outSpatial, winner)
    }

    /// Distinct values at least 0.05 apart, so finite differences of 1e-2 never change a window's maximum.
    static func untied(_ shape: [Int], seed: UInt64) -> NDArray {
        let n = shape.reduce(1, *)
        var rng = SplitMix64(seed: seed)
        let values = (0..<n).map { Float($0) * 0.05 - Float(n) * 0.025 }.shuffled(using: &rng)
        let a = NDArray(validated: TensorType(shape))
        for i in 0..<n { a.floats[i] = values[i] }
        return a
    }

    @Test(arguments: configs)
    func maxPoolingMatchesReference(_ c: Config) throws {
        let x = Harness.random(c.shape, seed: 11)
        let f = MaxPooling(kernel: c.kernel, stride: c.stride, ignoreBorder: c.ignoreBorder, pad: c.pad)
        let y = try Harness.forward1(f, [x])
        let r = Self.reference(x, c, .max)
        #expect(y.shape == r.shape)
        #expect(y.toFloats() == r.y)
        // Backward: each dy goes to its window's winner (accumulating where windows share one).
        let dy = Harness.random(r.shape, seed: 12)
        let dx = try #require(try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0])
        var expected = [Float](repeating: 0, count: x.count)
        for (k, w) in r.winner.enumerated() { expected[w] += dy.floats[k] }
        #expect(mismatch(dx.toFloats(), expected, rtol: 1e-6, atol: 1e-7) == nil)
    }

    @Test(arguments: configs)
    func averagePoolingMatchesReference(_ c: Config) throws {
        let x = Harness.random(c.shape, seed: 21)
        for includingPad in [true, false] {
            let f = AveragePooling(kernel: c.kernel, stride: c.stride, ignoreBorder: c.ignoreBorder, pad: c.pad,
                                   includingPad: includingPad)
            let y = try Harness.forward1(f, [x])
            let r = Self.reference(x, c, .average(includingPad: includingPad))
            #expect(y.shape == r.shape)
            #expect(mismatch(y.toFloats(), r.y, rtol: 1e-6, atol: 1e-7) == nil, "including_pad \(includingPad)")
        }
    }

    @Test(arguments: configs)
    func gradientsMatchFiniteDifferences(_ c: Config) throws {
        let x = Self.untied(c.shape, seed: 31)
        let maxF = MaxPooling(kernel: c.kernel, stride: c.stride, ignoreBorder: c.ignoreBorder, pad: c.pad)
        let outShape = try maxF.outputTypes([x.type])[0].shape
        let dy = Harness.random(outShape, seed: 32)
        let fs: [any Function] = [
            maxF,
            AveragePooling(kernel: c.kernel, stride: c.stride, ignoreBorder: c.ignoreBorder, pad: c.pad, includingPad: true),
            AveragePooling(kernel: c.kernel, stride: c.stride, ignoreBorder: c.ignoreBorder, pad: c.pad, includingPad: false),
        ]
        for f in fs {
            let dx = try #require(try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0])
            let num = try Harness.numericalGradient(f, inputs: [x], outputGrads: [dy], index: 0)
            let m = mismatch(dx.toFloats(), num, rtol: 1e-2, atol: 1e-3)
            #expect(m == nil, "\(f.typeName) \(f.arguments): \(m ?? "")")
        }
    }

    /// Ties: the first maximum in row-major window order takes the gradient.
    @Test func maxPoolingTiesGoToFirstMaximum() throws {
        let x = try Harness.floats([1, 1, 2, 4], [5, 1, 2, 7,
                                                  5, 5, 7, 7])
        let f = MaxPooling(kernel: [2, 2])
        #expect(try Harness.forward1(f, [x]).toFloats() == [5, 7])
        let dx = try #require(try Harness.backward(f, inputs: [x], outputGrads: [try Harness.floats([1, 1, 1, 2], [1, 2])],
                                                   want: [true])[0])
        #expect(dx.toFloats() == [1, 0, 0, 2, 0, 0, 0, 0])
    }

    /// The same rule in the 8-windows-at-a-time path: equal values everywhere, so every window's gradient
    /// goes to its top-left element.
    @Test func maxPoolingTiesInWideRows() throws {
        let x = try Harness.floats([1, 1, 2, 18], [Float](repeating: 5, count: 36))
        let dy = try Harness.floats([1, 1, 1, 9], (1...9).map(Float.init))
        let dx = try #require(try Harness.backward(MaxPooling(kernel: [2, 2]), inputs: [x], outputGrads: [dy], want: [true])[0])
        var expected = [Float](repeating: 0, count: 36)
        for w in 0..<9 { expected[2 * w] = Float(w + 1) }
        #expect(dx.toFloats() == expected)
    }

    /// NaNs in 2x2 windows (the plain 2x2 path, a row of 10 windows): a NaN in a window's first corner stays, a
    /// later one never takes over (nnabla 1.39 gives these values: [nan, 1, 7, 1, 1, 1, 1, 1, 1, 1]).
    @Test func maxPoolingNaNsInWideRows() throws {
        var values = [Float](repeating: 1, count: 2 * 20)
        values[0] = .nan           // window 0: first corner NaN -> NaN
        values[3] = .nan           // window 1: second corner NaN -> never greater -> 1
        values[20 + 19] = .nan     // window 9: last corner NaN -> 1
        values[4] = 7              // window 2: 7
        let x = try Harness.floats([1, 1, 2, 20], values)
        let y = try Harness.forward1(MaxPooling(kernel: [2, 2]), [x]).toFloats()
        #expect(y[0].isNaN)
        #expect(Array(y[1...]) == [1, 7, 1, 1, 1, 1, 1, 1, 1])
    }

    /// The same in a row of 6 windows (the 4-wide path, its last step overlapping); nnabla 1.39 gives
    /// [nan, 1, 7, 1, 1, 1].
    @Test func maxPoolingNaNsInShortRows() throws {
        var values = [Float](repeating: 1, count: 2 * 12)
        values[0] = .nan
        values[3] = .nan
        values[12 + 11] = .nan
        values[4] = 7
        let x = try Harness.floats([1, 1, 2, 12], values)
        let y = try Harness.forward1(MaxPooling(kernel: [2, 2]), [x]).toFloats()
        #expect(y[0].isNaN)
        #expect(Array(y[1...]) == [1, 7, 1, 1, 1])
    }

    /// Worked examples of item 20 and 21 (ignore_border=false uses one p; the divisor counts the pad).
    @Test func borderRulesWorkedExamples() throws {
        #expect(try MaxPooling(kernel: [3, 3], stride: [2, 2], ignoreBorder: false, pad: [1, 1])
            .outputTypes([TensorType([1, 1, 6, 6])])[0].shape == [1, 1, 4, 4])
        #expect(try MaxPooling(kernel: [3, 3], stride: [2, 2], ignoreBorder: true, pad: [1, 1])
            .outputTypes([TensorType([1, 1, 6, 6])])[0].shape == [1, 1, 3, 3])
        #expect(try MaxPooling(kernel: [2, 2], ignoreBorder: false)
            .outputTypes([TensorType([1, 1, 5, 5])])[0].shape == [1, 1, 3, 3])
        // L=3, k=3, s=1, p=1 on a row of ones: windows [-1,2) [0,3) [1,4) -> end min(.., L+p=4).
        let ones = try Harness.floats([1, 1, 1, 3], [1, 1, 1])
        let inc = try Harness.forward1(AveragePooling(kernel: [1, 3], stride: [1, 1], pad: [0, 1]), [ones])
        let twoThirds: Float = 2.0 / 3
        #expect(inc.toFloats() == [twoThirds, 1, twoThirds])
        let exc = try Harness.forward1(AveragePooling(kernel: [1, 3], stride: [1, 1], pad: [0, 1], includingPad: false), [ones])
        #expect(exc.toFloats() == [1, 1, 1])
        // ignore_border=false, L=5 k=2 s=2: the last window [4, 6) is cut at L + p = 5: divisor 1 per dim.
        let row = try Harness.floats([1, 1, 1, 5], [1, 2, 3, 4, 6])
        let cut = try Harness.forward1(AveragePooling(kernel: [1, 2], ignoreBorder: false), [row])
        #expect(cut.toFloats() == [1.5, 3.5, 6])
    }

    @Test(arguments: [[2, 3, 4, 5], [2, 3, 5], [2, 3], [1, 2, 2, 3, 2]])
    func globalAveragePoolingMatchesReference(_ shape: [Int]) throws {
        let x = Harness.random(shape, seed: 51)
        let f = GlobalAveragePooling()
        let y = try Harness.forward1(f, [x])
        #expect(y.shape == [shape[0], shape[1], 1, 1])
        let per = shape[2...].reduce(1, *)
        var expected: [Float] = []
        for n in 0..<shape[0] {
            for c in 0..<shape[1] {
                var s = 0.0
                for i in 0..<per { s += Double(x.floats[(n * shape[1] + c) * per + i]) }
                expected.append(Float(s / Double(per)))
            }
        }
        #expect(mismatch(y.toFloats(), expected, rtol: 1e-5, atol: 1e-6) == nil)
        let dy = Harness.random(y.shape, seed: 52)
        let dx = try #require(try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0])
        let num = try Harness.numericalGradient(f, inputs: [x], outputGrads: [dy], index: 0)
        #expect(mismatch(dx.toFloats(), num, rtol: 1e-2, atol: 1e-3) == nil)
        let exact = (0..<x.count).map { dy.floats[$0 / per] / Float(per) }
        #expect(mismatch(dx.toFloats(), exact, rtol: 1e-6, atol: 1e-7) == nil)
    }

    @Test func argumentsFollowNnablaDefaults() throws {
        var r = ArgReader(function: "MaxPooling", values: ["kernel": .ints([2, 3])])
        let m = try MaxPooling(arguments: &r)
        try r.finish()
        #expect(m.arguments.map { $0.0 } == ["kernel", "stride", "ignore_border", "pad", "channel_last"])
        #expect(m.arguments.map { $0.1 } == [.ints([2, 3]), .ints([2, 3]), .bool(true), .ints([0, 0]), .bool(false)])
        var r2 = ArgReader(function: "AveragePooling", values: ["kernel": .ints([2, 2]), "pad": .ints([1, 1])])
        let a = try AveragePooling(arguments: &r2)
        #expect(a.arguments.map { $0.0 } == ["kernel", "stride", "ignore_border", "pad", "channel_last", "including_pad"])
        #expect(a.arguments.last!.1 == .bool(true))
        var missing = ArgReader(function: "MaxPooling", values: [:])
        #expect(throws: KilnError.self) { try MaxPooling(arguments: &missing) }
    }

    @Test func rejectsBadArguments() throws {
        let x = TensorType([1, 2, 3, 3])
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [4, 4]).outputTypes([x]) }              // kernel too big
        #expect(throws: KilnError.self) { try AveragePooling(kernel: [2, 4]).outputTypes([x]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [1, 1, 1, 1]).outputTypes([x]) }       // 4-D kernel
        #expect(throws: KilnError.self) { try MaxPooling(kernel: []).outputTypes([x]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2], stride: [1]).outputTypes([x]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2], stride: [0, 1]).outputTypes([x]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2], pad: [2, 0]).outputTypes([x]) }  // pad >= kernel
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2], pad: [-1, 0]).outputTypes([x]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2], channelLast: true).outputTypes([x]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2]).outputTypes([TensorType([1, 2, 3, 3], .int32)]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2, 2]).outputTypes([TensorType([3, 3])]) }
        #expect(throws: KilnError.self) { try MaxPooling(kernel: [2, 2]).outputTypes([x, x]) }
        #expect(throws: KilnError.self) { try GlobalAveragePooling().outputTypes([TensorType([5])]) }
        #expect(throws: KilnError.self) { try GlobalAveragePooling().outputTypes([TensorType([2, 3, 4], .int32)]) }
        let v = try Variable(shape: [1, 1, 2, 2])
        #expect(throws: KilnError.self) { try F.maxPooling(v, kernel: [3, 3]) }
        #expect(try F.averagePooling(v, kernel: [3, 3], ignoreBorder: false).shape == [1, 1, 1, 1])
        #expect(try F.globalAveragePooling(v).shape == [1, 1, 1, 1])
    }
}
