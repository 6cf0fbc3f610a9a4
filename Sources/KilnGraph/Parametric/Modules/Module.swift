import KilnCore

/// nnabla's `nnabla.experimental.parametric_function_class.Module`: a layer that owns its parameters as
/// stored properties instead of registering them in the global `Parameters` registry.
///
/// Parameters and sub-modules are found by reflection (`Mirror`) over the stored properties of a module and
/// its superclasses (superclass properties first, then declaration order), as nnabla walks `__dict__`:
/// - a property holding a `Variable` (or an optional one that is set) is a parameter named by the property;
/// - a property holding a `Module` is a sub-module; its parameters are named `<property>/<name>`, nested
///   modules give `a/b/W` as nnabla's `get_parameters`;
/// - arrays of modules or of variables are walked too, element `i` of property `layers` being `layers/<i>`
///   (nnabla ignores Python lists; Swift has no `setattr`, so arrays are the natural container here).
/// A module reachable along several paths is visited once, under the first path (nnabla's `memo`).
///
/// One deliberate difference: a parameter held directly by the module `getParameters` is called on is named
/// `W`, where nnabla formats `"{}/{}".format("", "W")` and returns `/W`. Parameters of sub-modules are named
/// exactly as nnabla names them.
///
/// The layers are nested in `Module` (`Module.Affine`, `Module.Conv2d`, `Module.BatchNorm2d`, ...) because the
/// top-level names `Affine`, `Convolution`, ... are Kiln's function types; inside a `Module` subclass they
/// are found unqualified; elsewhere nnabla's aliases `Linear`, `Conv2d`, `BatchNorm2d`, ... (top-level, see
/// `LayerNames.swift`) name them without the prefix. Subclasses override `call(_:)`; `module(x)` forwards to it:
/// ```swift
/// final class MLP: Module {
///     let fc1: Affine, fc2: Affine      // Module.Affine
///     override init() throws {
///         fc1 = try Affine(nInMaps: 784, nOutMaps: 100); fc2 = try Affine(nInMaps: 100, nOutMaps: 10)
///         try super.init()
///     }
///     override func call(_ x: Variable) throws -> Variable { try fc2(try F.relu(try fc1(x))) }
/// }
/// let params = try MLP().getParameters()   // ["fc1/W", "fc1/b", "fc2/W", "fc2/b"]
/// ```
open class Module {
    /// Throwing, so that subclasses can declare `override init() throws` (building layers throws); it never
    /// throws itself.
    public init() throws {}

    /// Variables a module holds that are not parameters (a batch normalisation's constant gamma with
    /// `noScale`): `getParameters` leaves them out.
    package var constantVariables: Set<ObjectIdentifier> = []

    /// The module's computation. Subclasses override it; the base class throws.
    open func call(_ x: Variable) throws -> Variable {
        throw KilnError.invalidFunction(function: String(describing: type(of: self)),
                                        reason: "the module does not override call(_:)")
    }

    /// Applies the module (nnabla's `__call__`). Functions added by a sub-module are named under its
    /// property path ("stage1/0/conv1/Convolution"), so plans and pictures read like the model.
    public func callAsFunction(_ x: Variable) throws -> Variable {
        if !namedSubmodules {
            for (name, m) in ownMembers().modules { m.scopeName = name; m.nameSubmodulesOnce() }
            namedSubmodules = true
            // Parameters are named by their path from the module first called, as getParameters names them.
            if scopeName == nil { for (name, v) in getParameters(gradOnly: false) { v.name = name } }
        }
        guard let scopeName else { return try call(x) }
        return try Parameters.scope(scopeName) { try call(x) }
    }

    /// The module's name relative to its parent, used as the scope of the functions it adds.
    var scopeName: String?
    private var namedSubmodules = false

    private func nameSubmodulesOnce() {
        guard !namedSubmodules else { return }
        for (name, m) in ownMembers().modules where m.scopeName == nil { m.scopeName = name; m.nameSubmodulesOnce() }
        namedSubmodules = true
    }

    /// This module (named "") and every sub-module below it, depth first in declaration order, each once
    /// (nnabla's `get_modules`).
    public final func getModules() -> [(name: String, module: Module)] {
        var seen = Set<ObjectIdentifier>()
        var out: [(name: String, module: Module)] = []
        visit(prefix: "", seen: &seen, into: &out)
        return out
    }

    /// The parameters of this module and its sub-modules by name, in `getModules` order and declaration
    /// order within each module (nnabla's `get_parameters`). With `gradOnly` (the default, as in nnabla) the
    /// parameters with `needGrad == false` (batch-normalisation statistics, fixed parameters) are left out.
    public final func getParameters(gradOnly: Bool = true) -> ParameterDictionary {
        var out = ParameterDictionary()
        for (prefix, module) in getModules() {
            for (name, v) in module.ownMembers().variables where !gradOnly || v.needGrad {
                out[prefix.isEmpty ? name : prefix + "/" + name] = v
            }
        }
        return out
    }

    private func visit(prefix: String, seen: inout Set<ObjectIdentifier>, into out: inout [(name: String, module: Module)]) {
        guard seen.insert(ObjectIdentifier(self)).inserted else { return }
        out.append((prefix, self))
        for (name, m) in ownMembers().modules {
            m.visit(prefix: prefix.isEmpty ? name : prefix + "/" + name, seen: &seen, into: &out)
        }
    }

    /// The variables and modules held by this module's own stored properties, in declaration order
    /// (superclass properties first).
    final func ownMembers() -> (variables: [(String, Variable)], modules: [(String, Module)]) {
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: self)
        while let mirror = m { mirrors.append(mirror); m = mirror.superclassMirror }
        var variables: [(String, Variable)] = [], modules: [(String, Module)] = []
        for mirror in mirrors.reversed() {
            for child in mirror.children {
                guard var label = child.label else { continue }
                if label.hasPrefix(Module.lazyPrefix) { label.removeFirst(Module.lazyPrefix.count) }
                if let v = child.value as? Variable {
                    if !constantVariables.contains(ObjectIdentifier(v)) { variables.append((label, v)) }
                } else if let sub = child.value as? Module {
                    modules.append((label, sub))
                } else if let subs = child.value as? [Module] {
                    for (i, sub) in subs.enumerated() { modules.append(("\(label)/\(i)", sub)) }
                } else if let vs = child.value as? [Variable] {
                    for (i, v) in vs.enumerated() { variables.append(("\(label)/\(i)", v)) }
                }
            }
        }
        return (variables, modules)
    }

    private static let lazyPrefix = "$__lazy_storage_$_"

    /// A new parameter: a leaf variable of `shape` filled by `initializer` from `rng` (the global generator
    /// when nil, read at the call, as nnabla's initialisers do).
    static func parameter(_ name: String, shape: [Int], initializer: Initializer, needGrad: Bool,
                          rng: NumpyRandom?) throws -> Variable {
        let v = try Variable(shape: shape, needGrad: needGrad, name: name)
        v.isParameter = true
        try v.setData(try initializer.generate(count: v.size, rng: rng ?? GlobalRandom.prng))
        return v
    }

    /// Throws `invalidFunction` naming the module class when `condition` is false.
    static func require(_ condition: Bool, _ module: String, _ reason: @autoclosure () -> String) throws {
        if !condition { throw KilnError.invalidFunction(function: module, reason: reason()) }
    }
}
