import Foundation
import KilnCore
import KilnGraph
import KilnKernels

/// One parameter's solver state: the update count `t` and the solver's float32 arrays (nnabla's
/// `SolverState`: `t` and `pstate`), each of the parameter's shape. Allocated once in `setParameters`.
public final class SolverState {
    /// Number of updates applied to this parameter.
    public internal(set) var t: Int = 0
    /// State names in the solver's order ("m" for Momentum, "mean" and "var" for Adam, ...).
    public let names: [String]
    /// The state arrays, in the order of `names`.
    public let arrays: [NDArray]

    init(names: [String], shape: [Int]) {
        self.names = names
        self.arrays = names.map { _ in NDArray(validated: TensorType(shape, .float32)) }
    }

    /// The state array of that name, nil if this solver has none.
    public subscript(name: String) -> NDArray? {
        guard let i = names.firstIndex(of: name) else { return nil }
        return arrays[i]
    }

    func reset() {
        t = 0
        for a in arrays { a.zero() }
    }
}

/// The base of nnabla's solvers (1.39 semantics): a list of named parameters with per-parameter state.
///
/// A training step is `zeroGrad()`, forward/backward, optional `weightDecay`/`scaleGrad`/`clipGradByNorm`,
/// then `update()`. Parameters whose gradient was never written since `zeroGrad()` (`gradWritten` false)
/// are skipped by update, weightDecay, scaleGrad, clipGradByNorm and checkInfOrNanGrad, as in nnabla
/// (their `t` does not advance). Parameters whose data is not float32 are skipped too (solvers update
/// float32 parameters only). Updates run plain loops over the arrays and allocate nothing.
///
/// Subclasses give their state names to `init` and override `updateParameter`; `update()` has already
/// advanced `state.t` when it calls it.
open class Solver {
    /// nnabla's `solver.name` ("Sgd", "Adam", ...).
    public let name: String
    /// The learning rate (`alpha` for the Adam family), nnabla's `learning_rate()` / `set_learning_rate`.
    public var learningRate: Float
    /// The learning rate given to the constructor (AdamW and SgdW scale their decay by
    /// `learningRate / initialLearningRate`).
    public let initialLearningRate: Float
    /// The names of each parameter's state arrays.
    public let stateNames: [String]

    final class Slot {
        let name: String
        var variable: Variable
        let state: SolverState
        init(name: String, variable: Variable, stateNames: [String]) {
            self.name = name
            self.variable = variable
            self.state = SolverState(names: stateNames, shape: variable.shape)
        }
        /// True when the solver acts on this parameter now.
        var active: Bool { variable.gradWritten && variable.dtype == .float32 }
    }

    var slots: [Slot] = []

    /// The rate `weightDecay` gave for the next update only, in the solvers that decouple their weight decay
    /// (AdamW, SgdW: `decoupledDecay(wd:)`); `update()` clears it.
    var nextWeightDecay: Float?

    public init(name: String, learningRate: Float, stateNames: [String]) {
        self.name = name
        self.learningRate = learningRate
        self.initialLearningRate = learningRate
        self.stateNames = stateNames
    }

    // MARK: Parameters

    /// nnabla's `set_parameters(param_dict, reset=True, retain_state=False)`. `reset` first removes every
    /// parameter and its state. A name already registered gets the new variable and a fresh state, unless
    /// `retainState` is set and the shape is unchanged, which keeps its state.
    public func setParameters(_ params: ParameterDictionary, reset: Bool = true, retainState: Bool = false) {
        if reset { slots = [] }
        for (name, v) in params {
            if let i = slots.firstIndex(where: { $0.name == name }) {
                if retainState && slots[i].variable.shape == v.shape {
                    slots[i].variable = v
                } else {
                    slots[i] = Slot(name: name, variable: v, stateNames: stateNames)
                }
            } else {
                slots.append(Slot(name: name, variable: v, stateNames: stateNames))
            }
        }
    }

    /// Removes the named parameters and their states (unknown names are ignored, as in nnabla).
    public func removeParameters(_ names: [String]) {
        let drop = Set(names)
        slots.removeAll { drop.contains($0.name) }
    }

    public func clearParameters() { slots = [] }

    /// The registered parameters in registration order.
    public var parameters: ParameterDictionary { ParameterDictionary(slots.map { ($0.name, $0.variable) }) }

    /// Each parameter's state, in registration order.
    public var states: [(name: String, state: SolverState)] { slots.map { ($0.name, $0.state) } }

    /// The state of one parameter, nil if it is not registered.
    public func state(_ name: String) -> SolverState? { slots.first { $0.name == name }?.state }

    // MARK: Gradient operations

    /// Zeroes every parameter's gradient and marks it unwritten.
    public func zeroGrad() {
        for s in slots { s.variable.zeroGrad() }
    }

    /// Applies one update to every parameter whose gradient was written.
    open func update() {
        for s in slots where s.active {
            let v = s.variable
            if s.state.t < Int(Int32.max) { s.state.t += 1 }
            updateParameter(data: v.data.floats, grad: v.grad.floats, count: v.size, state: s.state)
        }
        nextWeightDecay = nil
    }

    /// The update rule for one parameter. `state.t` already counts this update.
    open func updateParameter(data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int,
                              state: SolverState) {}

    /// nnabla's `weight_decay(r)`: `g += r * p` for every written gradient (AdamW and SgdW override it:
    /// their decay is fused into the next update).
    open func weightDecay(_ decayRate: Float) {
        if decayRate == 0 { return }
        for s in slots where s.active {
            let p = s.variable.data.floats, g = s.variable.grad.floats
            Threads.elements(s.variable.size, AddScaled(g: g, p: p, rate: decayRate))
        }
    }

    /// nnabla's `scale_grad(s)`: `g *= s` for every written gradient.
    public func scaleGrad(_ scale: Float) {
        for s in slots where s.active {
            let g = s.variable.grad.floats
            Threads.elements(s.variable.size, Scale(g: g, by: scale))
        }
    }

    /// nnabla's `clip_grad_by_norm(c)`, per parameter: when `‖g‖₂ > c`, `g *= c / ‖g‖₂`.
    public func clipGradByNorm(_ clipNorm: Float) {
        for s in slots where s.active {
            let g = s.variable.grad.floats
            let n = s.variable.size
            var sum: Double = 0
            for i in 0..<n { let x = Double(g[i]); sum += x * x }
            let norm = sum.squareRoot()
            guard norm > Double(clipNorm) else { continue }
            let scale = Float(Double(clipNorm) / norm)
            Threads.elements(n, Scale(g: g, by: scale))
        }
    }

    /// `g[i] += rate * p[i]`.
    struct AddScaled: ParallelElement {
        let g: UnsafeMutablePointer<Float>, p: UnsafeMutablePointer<Float>, rate: Float
        @inline(__always) func callAsFunction(_ i: Int) { g[i] += rate * p[i] }
    }

    /// `g[i] *= by`.
    struct Scale: ParallelElement {
        let g: UnsafeMutablePointer<Float>, by: Float
        @inline(__always) func callAsFunction(_ i: Int) { g[i] *= by }
    }

    /// nnabla's `check_inf_or_nan_grad()`: true when any written gradient holds an infinity or a NaN.
    public func checkInfOrNanGrad() -> Bool {
        for s in slots where s.active {
            let g = s.variable.grad.floats
            for i in 0..<s.variable.size where !g[i].isFinite { return true }
        }
        return false
    }

    // MARK: State files

    /// Saves every parameter's state atomically as safetensors: "<param>/t" (int32 scalar) and
    /// "<param>/<state>" (float32 arrays).
    public func saveStates(path: String) throws {
        var tensors: [(String, NDArray)] = []
        for s in slots {
            let t = NDArray(validated: TensorType([], .int32))
            t.int32s[0] = Int32(clamping: s.state.t)
            tensors.append((s.name + "/t", t))
            for (n, a) in zip(s.state.names, s.state.arrays) { tensors.append((s.name + "/" + n, a)) }
        }
        try SafeTensors.write(tensors, metadata: ["solver": name], to: path)
    }

    /// Loads states saved by `saveStates` into the registered parameters. The file must hold the state of
    /// exactly the registered parameters with matching shapes, and finite values unless `allowNonFinite`
    /// (a NaN moment would spread into every later update); nothing changes unless it does.
    public func loadStates(path: String, allowNonFinite: Bool = false) throws {
        let file = try SafeTensors.read(path: path)
        var byName: [String: NDArray] = [:]
        for (k, a) in file.tensors { byName[k] = a }
        var expected = Set<String>()
        var ts: [Int] = []
        for s in slots {
            let tk = s.name + "/t"
            expected.insert(tk)
            guard let t = byName[tk] else {
                throw KilnError.invalidParameters("\(path): no state '\(tk)' for parameter '\(s.name)'")
            }
            guard t.dtype == .int32, t.count == 1, t.int32s[0] >= 0 else {
                throw KilnError.invalidParameters("\(path): state '\(tk)' must be one non-negative int32")
            }
            ts.append(Int(t.int32s[0]))
            for n in s.state.names {
                let k = s.name + "/" + n
                expected.insert(k)
                guard let a = byName[k] else {
                    throw KilnError.invalidParameters("\(path): no state '\(k)' for parameter '\(s.name)'")
                }
                guard a.dtype == .float32, a.shape == s.variable.shape else {
                    throw KilnError.invalidParameters(
                        "\(path): state '\(k)' is \(a.dtype) \(a.shape), parameter '\(s.name)' needs float32 \(s.variable.shape)")
                }
                if !allowNonFinite, let m = ParameterFile.nonFiniteMessage(k, a, kind: "solver state") {
                    throw KilnError.invalidParameters("\(path): \(m)")
                }
            }
        }
        if let extra = file.tensors.first(where: { !expected.contains($0.0) }) {
            throw KilnError.invalidParameters("\(path): state '\(extra.0)' belongs to no parameter of this \(name) solver")
        }
        for (i, s) in slots.enumerated() {
            s.state.t = ts[i]
            for (n, a) in zip(s.state.names, s.state.arrays) {
                if let src = byName[s.name + "/" + n] { try a.copy(from: src) }
            }
        }
    }
}
