/// Parameters by name, in insertion order: nnabla's `OrderedDict` of `nn.get_parameters()`,
/// `Module.get_parameters()` and `solver.get_parameters()`, and what `solver.set_parameters` takes.
///
/// It is a collection of `(name, variable)` pairs (so `for (name, v) in params` and `params.map` read as
/// they do on the dictionary's `items()`), looked up by name with `params["conv/W"]`, and written as a
/// dictionary literal, `solver.setParameters(["w": w, "b": b])`, or as a list of pairs, `[("w", w), ("b", b)]`. Assigning a name that is already present
/// replaces its variable and keeps its place, as an `OrderedDict` does.
public struct ParameterDictionary: RandomAccessCollection, ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral,
                                   CustomStringConvertible {
    public typealias Element = (name: String, variable: Variable)

    private var entries: [Element] = []
    private var positions: [String: Int] = [:]

    public init() {}

    /// The pairs in the order given; a repeated name keeps its first place and its last variable.
    public init<S: Sequence>(_ pairs: S) where S.Element == Element {
        for (name, v) in pairs { self[name] = v }
    }

    /// The pairs in the order given (a literal: `["w": w, "b": b]`).
    public init(dictionaryLiteral elements: (String, Variable)...) {
        for (name, v) in elements { self[name] = v }
    }

    /// The pairs in the order given (a literal: `[("w", w), ("b", b)]`).
    public init(arrayLiteral elements: (String, Variable)...) {
        for (name, v) in elements { self[name] = v }
    }

    /// A Swift dictionary has no order; its names are taken sorted, so the result is the same on every run.
    public init(_ dictionary: [String: Variable]) {
        for name in dictionary.keys.sorted() { self[name] = dictionary[name] }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }
    public subscript(position: Int) -> Element { entries[position] }

    /// The variable of a name, or nil. Setting nil removes the name.
    public subscript(name: String) -> Variable? {
        get { positions[name].map { entries[$0].variable } }
        set {
            if let v = newValue {
                if let i = positions[name] { entries[i].variable = v } else {
                    positions[name] = entries.count
                    entries.append((name, v))
                }
            } else if let i = positions.removeValue(forKey: name) {
                entries.remove(at: i)
                for k in i..<entries.count { positions[entries[k].name] = k }
            }
        }
    }

    /// The names in order (nnabla's `keys()`).
    public var names: [String] { entries.map(\.name) }
    /// The variables in order (nnabla's `values()`).
    public var variables: [Variable] { entries.map(\.variable) }

    /// The name under which `variable` (the object itself) is stored, if it is.
    public func name(of variable: Variable) -> String? {
        entries.first { $0.variable === variable }?.name
    }

    public var description: String {
        "[" + entries.map { "\($0.name): \($0.variable.shape)" }.joined(separator: ", ") + "]"
    }
}
