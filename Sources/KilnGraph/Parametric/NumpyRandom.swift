import Foundation
import Synchronization

/// NumPy's legacy `RandomState`: the MT19937 generator with NumPy's integer seeding, `random_sample`,
/// `uniform` and the polar Box-Muller `normal`. nnabla draws initial weights from `RandomState(313)`, so with
/// the same seed and call order Kiln's initial weights are nnabla's, bit for bit in float64 before the cast.
///
/// One generator may be shared (the context's `random`, nnabla's `nn.random.prng`), so its state sits behind
/// a lock taken once per call: a whole `uniform` or `normal` draw is one call.
public final class NumpyRandom: Sendable {
    private let state: Mutex<MT19937>

    public init(seed: UInt32 = 313) {
        state = Mutex(MT19937(seed: seed))
    }

    /// Starts over from another seed.
    public func reseed(_ s: UInt32) { state.withLock { $0 = MT19937(seed: s) } }

    /// Back to the state right after seeding.
    public func reset() { state.withLock { $0.reset() } }

    public func nextUInt32() -> UInt32 { state.withLock { $0.nextUInt32() } }

    /// A double in [0, 1) with 53 random bits (NumPy's `random_sample`).
    public func randomSample() -> Double { state.withLock { $0.randomSample() } }

    public func uniform(_ low: Double, _ high: Double, count: Int) -> [Float] {
        state.withLock { $0.uniform(low, high, count: count) }
    }

    /// A standard normal sample (NumPy's legacy polar method, which yields values in pairs).
    public func gauss() -> Double { state.withLock { $0.gauss() } }

    public func normal(_ mean: Double, _ std: Double, count: Int) -> [Float] {
        state.withLock { $0.normal(mean, std, count: count) }
    }

    /// Uniform integers in [low, high) (NumPy's `randint` for small ranges uses masked rejection).
    public func randint(_ low: Int, _ high: Int) -> Int { state.withLock { $0.randint(low, high) } }
}

/// The generator's state and its steps, as a value: `NumpyRandom` keeps one behind a lock.
struct MT19937 {
    var mt = [UInt32](repeating: 0, count: 624)
    var index = 624
    var cachedGauss: Double? = nil

    var seed: UInt32

    init(seed: UInt32) {
        self.seed = seed
        reset()
    }

    /// Back to the state right after seeding.
    mutating func reset() {
        cachedGauss = nil
        mt[0] = seed
        for i in 1..<624 {
            mt[i] = 1_812_433_253 &* (mt[i - 1] ^ (mt[i - 1] >> 30)) &+ UInt32(i)
        }
        index = 624
    }

    mutating func twist() {
        for i in 0..<624 {
            let y = (mt[i] & 0x8000_0000) | (mt[(i + 1) % 624] & 0x7FFF_FFFF)
            var v = mt[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { v ^= 0x9908_B0DF }
            mt[i] = v
        }
        index = 0
    }

    mutating func nextUInt32() -> UInt32 {
        if index >= 624 { twist() }
        var y = mt[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// A double in [0, 1) with 53 random bits (NumPy's `random_sample`).
    mutating func randomSample() -> Double {
        let a = Double(nextUInt32() >> 5), b = Double(nextUInt32() >> 6)
        return (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    mutating func uniform(_ low: Double, _ high: Double, count: Int) -> [Float] {
        (0..<count).map { _ in Float(low + (high - low) * randomSample()) }
    }

    /// A standard normal sample (NumPy's legacy polar method, which yields values in pairs).
    mutating func gauss() -> Double {
        if let g = cachedGauss { cachedGauss = nil; return g }
        var x1 = 0.0, x2 = 0.0, r2 = 0.0
        repeat {
            x1 = 2 * randomSample() - 1
            x2 = 2 * randomSample() - 1
            r2 = x1 * x1 + x2 * x2
        } while r2 >= 1 || r2 == 0
        let f = (-2 * log(r2) / r2).squareRoot()
        cachedGauss = f * x1
        return f * x2
    }

    mutating func normal(_ mean: Double, _ std: Double, count: Int) -> [Float] {
        (0..<count).map { _ in Float(mean + std * gauss()) }
    }

    /// Uniform integers in [low, high) (NumPy's `randint` for small ranges uses masked rejection).
    mutating func randint(_ low: Int, _ high: Int) -> Int {
        let range = UInt32(high - low - 1)
        if range == 0 { return low }
        var mask = range
        mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4; mask |= mask >> 8; mask |= mask >> 16
        while true {
            let v = nextUInt32() & mask
            if v <= range { return low + Int(v) }
        }
    }
}

/// The generator parametric functions draw from when no `rng` is given (nnabla's `nn.random.prng`): the
/// current context's. `Parameters.isolated` gives the running task a fresh one, as a new nnabla process has.
public enum GlobalRandom {
    public static var prng: NumpyRandom { Context.current.random }

    /// Reseeds the generator (nnabla's `nn.random.seed`).
    public static func seed(_ s: UInt32) { prng.reseed(s) }
}
