/// Saving and loading a module's parameters by their `getParameters` names (nnabla's
/// `Module.save_parameters` / `Module.load_parameters`), through `ParameterFile` (safetensors).
public extension Module {
    /// Writes the parameters to `path`. As nnabla, every parameter is saved by default, running statistics
    /// included; `gradOnly` keeps only those that need a gradient.
    func saveParameters(path: String, gradOnly: Bool = false) throws {
        try ParameterFile.save(getParameters(gradOnly: gradOnly), to: path)
    }

    /// Copies the values stored in `path` into this module's parameters, matched by name. With `requireAll`
    /// (the default, as nnabla fails on a parameter the file lacks) every parameter of the module must be in
    /// the file; entries of the file that the module does not have are ignored. A parameter holding NaN or
    /// an infinity is an error unless `allowNonFinite`.
    func loadParameters(path: String, requireAll: Bool = true, allowNonFinite: Bool = false) throws {
        try ParameterFile.load(into: getParameters(gradOnly: false), from: path,
                               requireAll: requireAll, allowNonFinite: allowNonFinite)
    }
}
