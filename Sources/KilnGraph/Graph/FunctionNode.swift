import KilnCore

/// One application of a function in a graph: the function with its arguments, its input variables and its
/// output types. Outputs are held weakly (a variable owns its parent, as in nnabla), so an output nobody
/// holds is still planned as a scratch buffer.
public final class FunctionNode {
    public let sequence: Int
    public let function: any Function
    public private(set) var inputs: [Variable]
    public let outputTypes: [TensorType]
    public var name: String
    private var weakOutputs: [WeakVariable]

    init(function: any Function, inputs: [Variable], outputTypes: [TensorType], name: String) {
        self.sequence = CreationSequence.take()
        self.function = function
        self.inputs = inputs
        self.outputTypes = outputTypes
        self.name = name
        self.weakOutputs = []
    }

    /// Empties `inputs` (only for tearing down a graph nobody else holds; see `Variable.deinit`).
    func detachInputs() -> [Variable] {
        let i = inputs
        inputs = []
        return i
    }

    func attach(_ outputs: [Variable]) { weakOutputs = outputs.map { WeakVariable(value: $0) } }

    /// The output variables that still exist (nil where the user dropped one).
    public var outputs: [Variable?] { weakOutputs.map { $0.value } }

    public var typeName: String { function.typeName }
}

package struct WeakVariable {
    package weak var value: Variable?

    /// The memberwise initializer, spelled out to be `package` (plans keep their variables weakly with it).
    package init(value: Variable?) {
        self.value = value
    }
}

/// Adds a function to the graph: checks its inputs, infers its outputs and returns them. Nothing runs.
public func apply(_ function: any Function, _ inputs: [Variable], name: String? = nil) throws -> [Variable] {
    let types = try function.outputTypes(inputs.map { $0.type })
    for t in types { _ = try Shapes.count(t.shape, context: "\(function.typeName) output") }
    let node = FunctionNode(function: function, inputs: inputs, outputTypes: types,
                            name: name ?? (Parameters.currentScope + function.typeName))
    let needGrad = function.isDifferentiable && inputs.enumerated().contains { i, v in
        v.needGrad && function.propagatesGradient(toInput: i, inputCount: inputs.count)
    }
    let outputs = types.enumerated().map { i, t in
        Variable(validated: t, parent: node, outputIndex: i, needGrad: needGrad)
    }
    node.attach(outputs)
    return outputs
}

/// Single-output convenience.
func apply1(_ function: any Function, _ inputs: [Variable], name: String? = nil) throws -> Variable {
    let outs = try apply(function, inputs, name: name)
    guard let y = outs.first else {
        throw KilnError.invalidFunction(function: function.typeName, reason: "produced no output")
    }
    return y
}
