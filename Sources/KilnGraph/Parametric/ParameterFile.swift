import KilnCore

/// Parameters saved as a safetensors file, one tensor per parameter under its full name (nnabla's
/// `save_parameters` / `load_parameters`, in the safetensors format instead of .h5/.protobuf).
public enum ParameterFile {
    /// Writes the parameters' values (sorted by name) atomically to `path`.
    public static func save(_ params: ParameterDictionary, to path: String, metadata: [String: String] = [:]) throws {
        try SafeTensors.write(params.map { ($0.name, $0.variable.data) }, metadata: metadata, to: path)
    }

    /// Loads the values of `params` from `path`. Every parameter found in the file must have the file's shape
    /// and dtype, and finite values unless `allowNonFinite` (a NaN or infinite weight would be trained or run
    /// on without a word); with `requireAll` every parameter must be in the file. Nothing is changed unless
    /// all checks pass. Returns the names of the file's tensors that matched no parameter.
    @discardableResult
    public static func load(into params: ParameterDictionary, from path: String, requireAll: Bool,
                            allowNonFinite: Bool = false) throws -> [String] {
        let file = try SafeTensors.read(path: path)
        var byName: [String: NDArray] = [:]
        for (name, a) in file.tensors { byName[name] = a }
        var assignments: [(Variable, NDArray)] = []
        var used = Set<String>()
        for (name, v) in params {
            guard let a = byName[name] else {
                if requireAll { throw KilnError.invalidParameters("parameter '\(name)' is missing from \(path)") }
                continue
            }
            try check(name, v, a, path)
            if !allowNonFinite { try checkFinite(name, a, path) }
            assignments.append((v, a))
            used.insert(name)
        }
        for (v, a) in assignments { try assign(v, a) }
        return file.tensors.map { $0.0 }.filter { !used.contains($0) }
    }

    static func check(_ name: String, _ v: Variable, _ a: NDArray, _ path: String) throws {
        guard v.shape == a.shape else {
            throw KilnError.invalidParameters("parameter '\(name)' has shape \(v.shape) but \(path) holds shape \(a.shape)")
        }
        guard v.dtype == a.dtype else {
            throw KilnError.invalidParameters("parameter '\(name)' has dtype \(v.dtype) but \(path) holds \(a.dtype)")
        }
    }

    /// An error for a parameter holding NaN or an infinity (`allowNonFinite` lets it through).
    static func checkFinite(_ name: String, _ a: NDArray, _ path: String) throws {
        if let message = nonFiniteMessage(name, a) { throw KilnError.invalidParameters("\(path): \(message)") }
    }

    /// What is wrong with parameter `name` if `a` holds a NaN or an infinity, else nil.
    package static func nonFiniteMessage(_ name: String, _ a: NDArray, kind: String = "parameter") -> String? {
        guard let (i, x) = a.firstNonFinite() else { return nil }
        return "\(kind) '\(name)' holds \(x) at index \(i) (non-finite \(kind)s are refused unless allowed: allowNonFinite, --allow-non-finite)"
    }

    static func assign(_ v: Variable, _ a: NDArray) throws {
        v.dataView = nil
        try v.data.copy(from: a)
    }
}

public extension Parameters {
    /// Saves the registered parameters (all of them by default, as nnabla's `save_parameters`).
    static func save(path: String, gradOnly: Bool = false) throws {
        try ParameterFile.save(current(gradOnly: gradOnly), to: path)
    }

    /// nnabla's `load_parameters`: sets the data of registered parameters found in the file (checking shape
    /// and dtype; nothing changes if any check fails) and registers the file's other tensors as new
    /// parameters (need_grad true, as nnabla creates them), in name order. As in nnabla, the names are
    /// relative to the current scope. A tensor holding NaN or an infinity is an error unless `allowNonFinite`.
    static func load(path: String, allowNonFinite: Bool = false) throws {
        let file = try SafeTensors.read(path: path)
        let prefix = currentScope
        var fresh: [(String, Variable)] = []
        var assignments: [(Variable, NDArray)] = []
        for (name, a) in file.tensors {
            if !allowNonFinite { try ParameterFile.checkFinite(name, a, path) }
            if let v = get(prefix + name) {
                try ParameterFile.check(name, v, a, path)
                assignments.append((v, a))
            } else {
                fresh.append((name, try Variable(a, needGrad: true, name: prefix + name)))
            }
        }
        for (v, a) in assignments { try ParameterFile.assign(v, a) }
        for (name, v) in fresh { set(name, v) }
    }
}
