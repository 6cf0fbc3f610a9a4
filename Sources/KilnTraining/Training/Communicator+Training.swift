import KilnCore
import KilnGraph

/// The collectives a distributed training run needs besides gradients: agreeing on the model, starting
/// every rank from rank 0's parameters and solver state, and sharing rank 0's resume point.
extension Communicator {
    /// Throws unless every rank holds parameters of the same names and shapes in the same order: ranks
    /// training different models would all-reduce unrelated gradients into nonsense.
    public func checkSameModel(_ parameters: ParameterDictionary) throws {
        guard size > 1 else { return }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var elements = 0
        for (name, v) in parameters {
            for byte in "\(name):\(v.shape);".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            elements = elements &+ v.size
        }
        let mine = try NDArray(shape: [4], dtype: .int32)
        mine.int32s[0] = Int32(truncatingIfNeeded: hash >> 32)
        mine.int32s[1] = Int32(truncatingIfNeeded: hash)
        mine.int32s[2] = Int32(clamping: parameters.count)
        mine.int32s[3] = Int32(clamping: elements)
        let all = try (0..<size).map { _ in try NDArray(shape: [4], dtype: .int32) }
        try allGather(mine, all)
        for r in 1..<size where (0..<4).contains(where: { all[r].int32s[$0] != all[0].int32s[$0] }) {
            throw KilnError.invalidData("rank \(r) builds a different model than rank 0 (\(all[r].int32s[2]) parameters of \(all[r].int32s[3]) elements against \(all[0].int32s[2]) of \(all[0].int32s[3]), or other names or shapes): every rank must train the same model")
        }
    }

    /// Rank `src`'s value of `value` on every rank.
    public func bcast(_ value: Int, src: Int = 0) throws -> Int {
        let a = try NDArray(shape: [2], dtype: .int32)
        a.int32s[0] = Int32(truncatingIfNeeded: value >> 32)
        a.int32s[1] = Int32(truncatingIfNeeded: value)
        try bcast([a], src: src)
        return Int(a.int32s[0]) << 32 | Int(UInt32(bitPattern: a.int32s[1]))
    }

    /// Copies rank 0's parameters, and each solver's state (arrays and update counts), to every rank.
    public func bcastTrainingState(parameters: ParameterDictionary, solvers: [Solver]) throws {
        guard size > 1 else { return }
        try bcast(parameters.map { $0.variable.data })
        for solver in solvers {
            let states = solver.states.map(\.state)
            try bcast(states.flatMap(\.arrays))
            let counts = try NDArray(shape: [max(states.count, 1) * 2], dtype: .int32)
            for (k, s) in states.enumerated() {
                counts.int32s[2 * k] = Int32(truncatingIfNeeded: s.t >> 32)
                counts.int32s[2 * k + 1] = Int32(truncatingIfNeeded: s.t)
            }
            try bcast([counts])
            for (k, s) in states.enumerated() {
                s.t = Int(counts.int32s[2 * k]) << 32 | Int(UInt32(bitPattern: counts.int32s[2 * k + 1]))
            }
        }
    }
}
