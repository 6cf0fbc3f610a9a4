import KilnCore
import KilnKernels

/// Dropout.
public enum StochasticFunctions {
    public static let all: [any Function.Type] = [Dropout.self]
}

/// The random stream of one Dropout: a key fixed at creation and a count of forward runs.
///
/// The mask of run r is a pure function of (key, r, element index) (a counter-based generator), so backward
/// regenerates exactly the mask of the last forward from `run` alone, nothing is stored per element, and
/// the loops split over threads. Copies of a Dropout share this object.
final class DropoutStream {
    let key: UInt64
    /// Forward runs so far; the last forward used mask number `run`.
    var run: UInt64 = 0

    init(key: UInt64) { self.key = key }

    /// Keys for `seed = -1`: a fixed sequence, one per Dropout created in the context (deterministic for a
    /// given program, and different Dropouts get different masks).
    static func make(seed: Int, context: Context = .current) -> DropoutStream {
        if seed >= 0 { return DropoutStream(key: mix(UInt64(seed) &+ 0x5851_F42D_4C95_7F2D)) }
        let unseeded = context.dropoutKeys.next()
        return DropoutStream(key: mix(0xD1B5_4A32_D192_ED03 &+ unseeded &* 0x9E37_79B9_7F4A_7C15))
    }

    /// SplitMix64's finaliser: a bijective 64-bit mixer.
    @inline(__always)
    static func mix(_ v: UInt64) -> UInt64 {
        var z = v
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Base of the per-element hashes of run `r`.
    @inline(__always)
    func base(_ r: UInt64) -> UInt64 { DropoutStream.mix(key ^ (r &* 0xA076_1D64_78BD_642F)) }

    /// Whether element `i` is kept: a uniform 24-bit value in [0, 1) compared with p (keep iff u >= p, so
    /// P(keep) = 1 - p).
    @inline(__always)
    static func keep(_ base: UInt64, _ i: Int, threshold: UInt32) -> Bool {
        let h = mix(base &+ UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15)
        return UInt32(truncatingIfNeeded: h >> 40) >= threshold
    }
}

/// nnabla's Dropout: `y = x * mask / (1 - p)` with `mask ~ Bernoulli(1 - p)` drawn anew at every forward;
/// backward `dx = dy * mask / (1 - p)` with the mask of the last forward. Kiln accepts `0 <= p < 1` (nnabla
/// requires p > 0; p = 0 is the identity). `seed >= 0` gives a reproducible sequence of masks; `seed = -1`
/// (the default) uses a fixed per-process sequence of streams, one per Dropout created (not OS randomness),
/// so runs of the same program are reproducible.
public struct Dropout: Function {
    public static let typeName = "Dropout"
    public var p: Double
    public var seed: Int
    let stream: DropoutStream

    public init(p: Double = 0.5, seed: Int = -1) {
        self.p = p
        self.seed = seed
        stream = DropoutStream.make(seed: seed)
    }

    public init(arguments a: inout ArgReader) throws {
        self.init(p: try a.double("p", default: 0.5), seed: try a.int("seed", default: -1))
    }

    public var arguments: [(String, ArgValue)] { [("p", .double(p)), ("seed", .int(seed))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        guard p >= 0 && p < 1 else { throw error("p \(p) must be in [0, 1)") }
        guard seed >= -1 else { throw error("seed \(seed) must be -1 (default stream) or >= 0") }
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    /// `p` as a threshold on 24-bit uniforms, and the scale `1/(1-p)`.
    var threshold: UInt32 { UInt32(min((p * 16_777_216).rounded(.up), 16_777_216)) }
    var scale: Float { Float(1 / (1 - p)) }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count
        let stream = stream, t = threshold, s = scale
        return {
            stream.run &+= 1
            let base = stream.base(stream.run)
            Threads.chunks(n, DropoutForward(x: x, y: y, base: base, t: t, s: s))
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0]
        let stream = stream, t = threshold, s = scale
        return {
            let base = stream.base(stream.run)
            Threads.chunks(n, DropoutBackward(dy: dy, dx: dx, base: base, t: t, s: s, acc: acc))
        }
    }
}

public extension F {
    /// nnabla's `F.dropout(x, p=0.5, seed=-1)`.
    static func dropout(_ x: Variable, p: Double = 0.5, seed: Int = -1) throws -> Variable {
        try apply1(Dropout(p: p, seed: seed), [x])
    }
}

/// Dropout forward: kept elements scaled, the others 0.
struct DropoutForward: ParallelChunk {
    let x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, base: UInt64, t: UInt32, s: Float
    @inline(__always) func callAsFunction(_ lo: Int, _ hi: Int) {
        for i in lo..<hi { y[i] = DropoutStream.keep(base, i, threshold: t) ? x[i] * s : 0 }
    }
}

/// Dropout backward: the gradient through the kept elements, scaled.
struct DropoutBackward: ParallelChunk {
    let dy: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>, base: UInt64, t: UInt32, s: Float, acc: Bool
    @inline(__always) func callAsFunction(_ lo: Int, _ hi: Int) {
        if acc {
            for i in lo..<hi where DropoutStream.keep(base, i, threshold: t) { dx[i] += dy[i] * s }
        } else {
            for i in lo..<hi { dx[i] = DropoutStream.keep(base, i, threshold: t) ? dy[i] * s : 0 }
        }
    }
}
