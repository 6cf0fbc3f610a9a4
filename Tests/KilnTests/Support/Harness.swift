import Foundation
@testable import Kiln

/// Runs one function's kernels directly on NDArrays, without a graph or a plan. Function tests use it to
/// compare kernels with naive references and finite differences; plan tests compare plans against it.
enum Harness {
    /// Forward pass. Inputs are copied first, so functions that write an input (BatchNormalization's running
    /// statistics) leave the caller's arrays alone; the written copies are returned as `mutatedInputs`.
    static func forward(_ f: any Function, _ inputs: [NDArray]) throws -> (outputs: [NDArray], mutatedInputs: [NDArray]) {
        let ins = inputs.map(copy)
        let outTypes = try f.outputTypes(ins.map { $0.type })
        let outs = outTypes.map { NDArray(validated: $0) }
        let tb = TypeBinding(inputs: ins.map { $0.type }, outputs: outTypes)
        let ws = workspace(f.forwardWorkspace(tb))
        defer { ws?.deallocate() }
        let k = try f.makeForward(ForwardBinding(inputs: ins.map(tensor), outputs: outs.map(tensor), workspace: ws))
        try k()
        return (outs, ins)
    }

    static func forward1(_ f: any Function, _ inputs: [NDArray]) throws -> NDArray {
        try forward(f, inputs).outputs[0]
    }

    /// Backward pass after a forward on copies of `inputs`. `want[i]` asks for input i's gradient;
    /// `initial[i]`, when given, is accumulated into (testing the accumulate path).
    static func backward(_ f: any Function, inputs: [NDArray], outputGrads: [NDArray], want: [Bool],
                         initial: [NDArray?]? = nil) throws -> [NDArray?] {
        let ins = inputs.map(copy)
        let outTypes = try f.outputTypes(ins.map { $0.type })
        let outs = outTypes.map { NDArray(validated: $0) }
        let tb = TypeBinding(inputs: ins.map { $0.type }, outputs: outTypes)
        // Forward on its own copies so that the values backward reads are the pre-forward inputs plus outputs,
        // exactly what a plan provides (BN running stats are updated in ins, which backward may read).
        let fws = workspace(f.forwardWorkspace(tb))
        try f.makeForward(ForwardBinding(inputs: ins.map(tensor), outputs: outs.map(tensor), workspace: fws))()
        fws?.deallocate()
        let reads = f.backwardReads(inputCount: ins.count, outputCount: outs.count)
        let grads: [NDArray?] = try ins.indices.map { i in
            guard want[i] && f.propagatesGradient(toInput: i, inputCount: ins.count) else { return nil }
            if let start = initial?[i] { return copy(start) }
            let g = NDArray(validated: TensorType(ins[i].shape, .float32))
            try g.fill(Float.nan) // overwrite mode must not read what was there
            return g
        }
        let bws = workspace(f.backwardWorkspace(tb))
        defer { bws?.deallocate() }
        let b = BackwardBinding(
            inputTypes: ins.map { $0.type }, outputTypes: outTypes,
            inputs: ins.indices.map { reads.inputs[$0] ? tensor(ins[$0]) : nil },
            outputs: outs.indices.map { reads.outputs[$0] ? tensor(outs[$0]) : nil },
            outputGrads: outputGrads.map(tensor),
            inputGrads: grads.map { $0.map(tensor) },
            accumulate: ins.indices.map { initial?[$0] != nil },
            workspace: bws)
        try f.makeBackward(b)()
        return grads
    }

    /// Central finite differences of `sum(outputs[j] * outputGrads[j])` with respect to input `index`,
    /// computed in Double from float32 forwards.
    static func numericalGradient(_ f: any Function, inputs: [NDArray], outputGrads: [NDArray], index: Int,
                                  eps: Float = 1e-2) throws -> [Float] {
        let x = inputs[index]
        var result = [Float](repeating: 0, count: x.count)
        for e in 0..<x.count {
            let orig = x.floats[e]
            var vals = [Double](repeating: 0, count: 2)
            for (si, sign) in [Float(1), Float(-1)].enumerated() {
                let probe = inputs.map(copy)
                probe[index].floats[e] = orig + sign * eps
                let outs = try forward(f, probe).outputs
                var s = 0.0
                for (j, o) in outs.enumerated() where j < outputGrads.count {
                    for k in 0..<o.count { s += Double(o.floats[k]) * Double(outputGrads[j].floats[k]) }
                }
                vals[si] = s
            }
            result[e] = Float((vals[0] - vals[1]) / (2 * Double(eps)))
        }
        return result
    }

    static func copy(_ a: NDArray) -> NDArray {
        let c = NDArray(validated: a.type)
        c.raw.copyMemory(from: a.raw, byteCount: a.type.byteCount)
        return c
    }

    static func tensor(_ a: NDArray) -> Tensor { Tensor(a.raw, a.type) }

    static func workspace(_ bytes: Int) -> UnsafeMutableRawPointer? {
        bytes > 0 ? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64) : nil
    }

    /// A float array of the given shape with values from a seeded generator (uniform in `range`).
    static func random(_ shape: [Int], seed: UInt64, in range: ClosedRange<Float> = -1...1) -> NDArray {
        var rng = SplitMix64(seed: seed)
        let a = NDArray(validated: TensorType(shape, .float32))
        for i in 0..<a.count { a.floats[i] = Float.random(in: range, using: &rng) }
        return a
    }

    static func ints(_ shape: [Int], _ values: [Int32]) throws -> NDArray {
        let a = try NDArray(shape: shape, dtype: .int32)
        try a.setInt32s(values)
        return a
    }

    static func floats(_ shape: [Int], _ values: [Float]) throws -> NDArray {
        try NDArray(shape: shape, floats: values)
    }
}

/// A small deterministic generator for test data.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Element-wise closeness: |a - b| <= atol + rtol * |b|. Returns a description of the first mismatch.
func mismatch(_ a: [Float], _ b: [Float], rtol: Float, atol: Float) -> String? {
    guard a.count == b.count else { return "count \(a.count) vs \(b.count)" }
    for i in 0..<a.count {
        let d = abs(a[i] - b[i])
        if !(d <= atol + rtol * abs(b[i])) && !(a[i] == b[i]) {
            return "element \(i): \(a[i]) vs expected \(b[i]) (diff \(d))"
        }
    }
    return nil
}
