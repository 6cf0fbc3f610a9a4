import KilnCore

/// A value in a define-then-run graph, as nnabla's `nn.Variable`.
///
/// Creating variables and applying functions only builds the graph. `forward` and `backward` compile the
/// graph that ends here into a plan (cached until the graph or a shape changes) and run it.
public final class Variable {
    public let sequence: Int
    public let type: TensorType
    public var name: String
    /// Whether gradients are computed for this variable (nnabla's `need_grad`).
    public var needGrad: Bool
    /// Persistent variables keep their value after forward even with `clearBuffer` (nnabla's `persistent`).
    public var persistent: Bool
    /// Whether this leaf is a model parameter (made by `PF` or a module), so that plans and pictures call it
    /// one even when it takes no gradient (BN's running statistics, fixed parameters).
    public package(set) var isParameter = false
    /// Whether a graph file declared this leaf an input: it is saved as one again even when it takes a
    /// gradient (an input with need_grad, for `kiln run --backward`), and tools do not train it.
    public package(set) var isInput = false
    /// The function that produced this variable, nil for inputs and parameters.
    public private(set) var parent: FunctionNode?
    public let outputIndex: Int

    private var dataArray: NDArray?
    private var gradArray: NDArray?
    /// Where the last run of a plan left this value when it is not in `dataArray` (an arena slot).
    package var dataView: ArenaView?
    package var gradView: ArenaView?
    /// Set by solvers' `zeroGrad` and by backward: a parameter whose gradient was never written since
    /// `zeroGrad` is skipped by the solver, as in nnabla.
    public package(set) var gradWritten = false
    /// A deferred error from a setter that cannot throw (`d = [..]` with the wrong count).
    var pendingError: KilnError?
    /// What the runtime keeps on this variable as a root between runs: the plans compiled for it and the
    /// training plan whose forward phase ran last, for `backward` (KilnRuntime's `PlanCache`, read through
    /// `Variable.planCache` and `Variable.lastTraining`).
    ///
    /// Opaque on purpose: plans and executables belong to the layers above the graph (KilnCompiler,
    /// KilnRuntime), and KilnGraph must not depend on them. The variable only owns the slot, so the cache
    /// lives and dies with it exactly as a stored dictionary would; only KilnRuntime fills it and casts it back.
    package var runtimeCache: AnyObject?

    /// A new leaf variable (an input or a parameter). Throws for invalid shapes.
    public init(shape: [Int], dtype: DType = .float32, needGrad: Bool = false, name: String = "") throws {
        _ = try Shapes.count(shape)
        self.sequence = CreationSequence.take()
        self.type = TensorType(shape, dtype)
        self.needGrad = needGrad
        self.persistent = false
        self.name = name
        self.outputIndex = 0
    }

    /// A leaf variable holding a copy of `array`.
    public convenience init(_ array: NDArray, needGrad: Bool = false, name: String = "") throws {
        try self.init(shape: array.shape, dtype: array.dtype, needGrad: needGrad, name: name)
        try data.copy(from: array)
    }

    init(validated type: TensorType, parent: FunctionNode?, outputIndex: Int, needGrad: Bool) {
        self.sequence = CreationSequence.take()
        self.type = type
        self.parent = parent
        self.outputIndex = outputIndex
        self.needGrad = needGrad
        self.persistent = false
        self.name = ""
    }

    /// Releases the graph behind this variable iteratively: the default, recursive release of a chain of
    /// tens of thousands of functions would overflow the stack.
    deinit {
        // `pending` must hold the only reference to the parent: no local binding may keep it alive.
        var pending: [FunctionNode] = parent.map { [$0] } ?? []
        parent = nil
        while var node = pending.popLast() {
            guard isKnownUniquelyReferenced(&node) else { continue }
            var inputs = node.detachInputs()
            while var v = inputs.popLast() {
                if isKnownUniquelyReferenced(&v), let q = v.parent {
                    v.parent = nil
                    pending.append(q)
                }
            }
        }
    }

    public var shape: [Int] { type.shape }
    public var dtype: DType { type.dtype }
    public var size: Int { type.count }
    public var ndim: Int { type.rank }


    /// The variable's own storage (allocated on first use). After a plan run, values that the plan kept in
    /// its arena are copied here when read through `d`.
    public var data: NDArray {
        if let a = dataArray { return a }
        let a = NDArray(validated: type)
        dataArray = a
        return a
    }

    public var grad: NDArray {
        if let a = gradArray { return a }
        let a = NDArray(validated: TensorType(type.shape, .float32))
        gradArray = a
        return a
    }


    /// The values as Float, nnabla's `.d`. Setting copies in; a wrong count is reported by the next
    /// `forward` (a property setter cannot throw).
    public var d: [Float] {
        get {
            if let v = dataView, v.isValid { return v.floats(count: size) }
            return data.toFloats()
        }
        set {
            dataView = nil
            guard newValue.count == size else {
                pendingError = .invalidData("\(displayName).d: expected \(size) values for shape \(shape), got \(newValue.count)")
                return
            }
            do { try data.setFloats(newValue, name: displayName) } catch let e as KilnError {
                pendingError = e
            } catch {
                pendingError = .invalidData("\(displayName).d: \(error)")
            }
        }
    }

    /// The gradient as Float, nnabla's `.g`.
    public var g: [Float] {
        get {
            if let v = gradView, v.isValid { return v.floats(count: size) }
            return grad.toFloats()
        }
        set {
            gradView = nil
            do { try grad.setFloats(newValue); gradWritten = true } catch {
                pendingError = .invalidData("\(displayName).g: expected \(size) values for shape \(shape), got \(newValue.count)")
            }
        }
    }

    /// Throwing setters, for callers that want the error at the call.
    /// int32 data takes only integers within int32's range (the error names the variable, index and value).
    public func setData(_ values: [Float]) throws { dataView = nil; try data.setFloats(values, name: displayName) }
    /// Values of a file (a JSON file's doubles): float32 and float16 data round to the nearest value, int32 data
    /// takes only integers within its range (exact beyond float32's 2^24); a finite value beyond the dtype's
    /// range is an error naming the variable, the index and the value.
    public func setData(converting values: [Double]) throws { dataView = nil; try data.setValues(values, name: displayName) }
    /// Int32 values, copied exactly. Disfavoured, so that an array literal (`setData([1, 2])`, `setData([0.5,
    /// -1])`) takes the `[Float]` overload instead of being ambiguous; int32 variables accept those floats
    /// when they are whole numbers. Literal integers above 2^24 lose precision on that path: give them as
    /// `[Int32]`.
    @_disfavoredOverload
    public func setData(_ values: [Int32]) throws { dataView = nil; try data.setInt32s(values) }
    public func setGrad(_ values: [Float]) throws { gradView = nil; try grad.setFloats(values); gradWritten = true }

    /// Moves the gradient into `array` (a view into a gradient bucket), keeping its values: from now on `.g`,
    /// solvers and plans use that memory.
    package func moveGrad(into array: NDArray) throws {
        try array.copy(from: grad)
        gradView = nil
        gradArray = array
    }

    /// Zeroes the gradient and marks it unwritten (what a solver's zeroGrad does to each parameter).
    public func zeroGrad() {
        gradView = nil
        gradArray?.zero()
        gradWritten = false
    }

    /// A new leaf variable sharing this one's data array, cut from the graph (nnabla's
    /// `get_unlinked_variable`). Gradients do not flow through it unless `needGrad` is set.
    public func unlinked(needGrad: Bool? = nil) -> Variable {
        let v = Variable(validated: type, parent: nil, outputIndex: 0, needGrad: needGrad ?? self.needGrad)
        v.dataArray = self.data
        v.name = name
        return v
    }

    package var displayName: String { name.isEmpty ? "variable \(type)" : "'\(name)'" }

    package func takePendingError() throws {
        if let e = pendingError { pendingError = nil; throw e }
    }
}
