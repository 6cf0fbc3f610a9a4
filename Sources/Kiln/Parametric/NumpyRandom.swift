import Foundation

/// NumPy's legacy `RandomState`: the MT19937 generator with NumPy's integer seeding, `random_sample`,
/// `uniform` and the polar Box-Muller `normal`. nnabla draws initial weights from `RandomState(313)`, so with
/// the same seed and call order Kiln's initial weights are nnabla's, bit for bit in float64 before the cast.
public final class NumpyRandom {
    private var mt = [UInt32](repeating: 0, count: 624)
    private var index = 624
    private var cachedGauss: Double? = nil

    private var seed: UInt32

    public init(seed: UInt32 = 313) {
        self.seed = seed
        reset()
    }

    /// Starts over from another seed.
    public func reseed(_ s: UInt32) {
        seed = s
        reset()
    }

    /// Back to the state right after seeding.
    public func reset() {
        cachedGauss = nil
        mt[0] = seed
        for i in 1..<624 {
            mt[i] = 1_812_433_253 &* (mt[i - 1] ^ (mt[i - 1] >> 30)) &+ UInt32(i)
        }
        index = 624
    }

    private func twist() {
        for i in 0..<624 {
            let y = (mt[i] & 0x8000_0000) | (mt[(i + 1) % 624] & 0x7FFF_FFFF)
            var v = mt[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { v ^= 0x9908_B0DF }
            mt[i] = v
        }
        index = 0
    }

    public func nextUInt32() -> UInt32 {
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
    public func randomSample() -> Double {
        let a = Double(nextUInt32() >> 5), b = Double(nextUInt32() >> 6)
        return (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    public func uniform(_ low: Double, _ high: Double, count: Int) -> [Float] {
        (0..<count).map { _ in Float(low + (high - low) * randomSample()) }
    }

    /// A standard normal sample (NumPy's legacy polar method, which yields values in pairs).
    public func gauss() -> Double {
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

    public func normal(_ mean: Double, _ std: Double, count: Int) -> [Float] {
        (0..<count).map { _ in Float(mean + std * gauss()) }
    }

    /// Uniform integers in [low, high) (NumPy's `randint` for small ranges uses masked rejection).
    public func randint(_ low: Int, _ high: Int) -> Int {
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

/// The generator parametric functions draw from when no `rng` is given (nnabla's `nn.random.prng`).
/// `Parameters.isolated` gives the running task its own generator, as a fresh nnabla process would have.
public enum GlobalRandom {
    nonisolated(unsafe) private static var global = NumpyRandom(seed: 313)
    @TaskLocal static var override: NumpyRandom?

    public static var prng: NumpyRandom {
        get { override ?? global }
        set { if override == nil { global = newValue } }
    }

    /// Reseeds the generator (nnabla's `nn.random.seed`).
    public static func seed(_ s: UInt32) {
        if let o = override { o.reseed(s) } else { global = NumpyRandom(seed: s) }
    }
}
