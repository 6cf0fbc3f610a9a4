/// nnabla's global parameter registry: parameters by scoped name ("conv1/conv/W"), in creation order.
///
/// `Parameters.scope("conv1") { ... }` is `nn.parameter_scope("conv1")`; `Parameters.current(gradOnly:)` is
/// `nn.get_parameters(grad_only=...)`; `Parameters.clear()` is `nn.clear_parameters()`.
public enum Parameters {
    nonisolated(unsafe) private static var names: [String] = []
    nonisolated(unsafe) private static var byName: [String: Variable] = [:]
    nonisolated(unsafe) private static var path: [String] = []

    /// Runs `body` with `name` appended to the current scope.
    public static func scope<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        path.append(name)
        defer { path.removeLast() }
        return try body()
    }

    /// The current scope as a prefix ("a/b/"), empty at the top.
    public static var currentScope: String { path.isEmpty ? "" : path.joined(separator: "/") + "/" }

    /// All parameters (by default only those that need a gradient, as nnabla's `get_parameters()`).
    public static func current(gradOnly: Bool = true) -> [(name: String, variable: Variable)] {
        names.compactMap { n in
            guard let v = byName[n], !gradOnly || v.needGrad else { return nil }
            return (n, v)
        }
    }

    /// Looks a parameter up by its full name.
    public static func get(_ fullName: String) -> Variable? { byName[fullName] }

    /// Registers (or replaces) a parameter under the current scope.
    public static func set(_ name: String, _ v: Variable) {
        let full = currentScope + name
        if byName[full] == nil { names.append(full) }
        byName[full] = v
        if v.name.isEmpty { v.name = full }
    }

    public static func clear() {
        names = []
        byName = [:]
    }

    /// nnabla's `get_parameter_or_create`: the existing parameter of that name under the current scope, or a
    /// new one initialised by `initializer`. An existing parameter of another shape is an error.
    public static func getOrCreate(_ name: String, shape: [Int], initializer: Initializer, needGrad: Bool = true,
                                   rng: NumpyRandom? = nil) throws -> Variable {
        let full = currentScope + name
        if let v = byName[full] {
            guard v.shape == shape else {
                throw KilnError.invalidParameters("parameter '\(full)' exists with shape \(v.shape), requested \(shape)")
            }
            return v
        }
        let v = try Variable(shape: shape, needGrad: needGrad, name: full)
        try v.setData(try initializer.generate(count: v.size, rng: rng ?? GlobalRandom.prng))
        names.append(full)
        byName[full] = v
        return v
    }
}
