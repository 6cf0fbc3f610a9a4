import Foundation
import KilnCore

/// A registry of parameters by scoped name ("conv1/conv/W"), in creation order: nnabla's global parameter
/// dictionary. `Parameters` works on the store of `Context.current`: the process's, or the one of a context
/// installed with `Parameters.isolated` or `Context.with` for the running task (tests and libraries that
/// must not share names).
public final class ParameterStore: @unchecked Sendable {
    private let lock = NSLock()
    private var names: [String] = []
    private var byName: [String: Variable] = [:]
    fileprivate var path: [String] = []

    public init() {}

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    func all(gradOnly: Bool) -> ParameterDictionary {
        withLock {
            ParameterDictionary(names.compactMap { n in
                // A registered value the graph computes (a converter's W_q) is never a gradient parameter.
                guard let v = byName[n], !gradOnly || (v.needGrad && v.parent == nil) else { return nil }
                return (n, v)
            })
        }
    }

    func get(_ name: String) -> Variable? { withLock { byName[name] } }

    func set(_ full: String, _ v: Variable) {
        withLock {
            if byName[full] == nil { names.append(full) }
            byName[full] = v
        }
    }

    func clear() { withLock { names = []; byName = [:] } }

    static var current: ParameterStore { Context.current.parameters }
}

/// nnabla's parameter API: `Parameters.scope("conv1") { ... }` is `nn.parameter_scope("conv1")`,
/// `Parameters.current(gradOnly:)` is `nn.get_parameters(grad_only=...)`, `Parameters.clear()` is
/// `nn.clear_parameters()`.
public enum Parameters {
    /// Runs `body` with `name` appended to the current scope.
    public static func scope<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        let store = ParameterStore.current
        store.withLock { store.path.append(name) }
        defer { store.withLock { _ = store.path.popLast() } }
        return try body()
    }

    /// Runs `body` with a fresh, private registry (and scope) and a fresh generator seeded 313 for the
    /// current task, as in a new nnabla process (`Context.isolated`, other settings kept).
    public static func isolated<T>(_ body: () throws -> T) rethrows -> T {
        try Context.with(Context.current.isolated()) { try body() }
    }

    /// The current scope as a prefix ("a/b/"), empty at the top.
    public static var currentScope: String {
        let store = ParameterStore.current
        return store.withLock { store.path.isEmpty ? "" : store.path.joined(separator: "/") + "/" }
    }

    /// All parameters (by default only those that need a gradient, as nnabla's `get_parameters()`).
    public static func current(gradOnly: Bool = true) -> ParameterDictionary {
        ParameterStore.current.all(gradOnly: gradOnly)
    }

    /// Looks a parameter up by its full name.
    public static func get(_ fullName: String) -> Variable? { ParameterStore.current.get(fullName) }

    /// Registers (or replaces) a parameter under the current scope.
    public static func set(_ name: String, _ v: Variable) {
        let full = currentScope + name
        ParameterStore.current.set(full, v)
        if v.name.isEmpty { v.name = full }
    }

    public static func clear() { ParameterStore.current.clear() }

    /// nnabla's `get_parameter_or_create`: the existing parameter of that name under the current scope, or a
    /// new one initialised by `initializer`. An existing parameter of another shape is an error.
    public static func getOrCreate(_ name: String, shape: [Int], initializer: Initializer, needGrad: Bool = true,
                                   rng: NumpyRandom? = nil) throws -> Variable {
        let full = currentScope + name
        if let v = get(full) {
            guard v.shape == shape else {
                throw KilnError.invalidParameters("parameter '\(full)' exists with shape \(v.shape), requested \(shape)")
            }
            return v
        }
        let v = try Variable(shape: shape, needGrad: needGrad, name: full)
        v.isParameter = true
        try v.setData(try initializer.generate(count: v.size, rng: rng ?? GlobalRandom.prng))
        ParameterStore.current.set(full, v)
        return v
    }
}
