/// Finds the function nodes behind a set of roots.
///
/// Contract: returns every node reachable from the roots through inputs, each once, ordered by creation
/// (which is always a topological order: a node's inputs exist before it does).
package enum GraphCollector {
    /// Values in `stops` are treated as leaves: the walk does not go behind them.
    package static func nodes(from roots: [Variable], stoppingAt stops: Set<ValueKey> = []) -> [FunctionNode] {
        var seen = Set<ObjectIdentifier>()
        var out: [FunctionNode] = []
        var stack: [FunctionNode] = roots.filter { !stops.contains(ValueKey($0)) }.compactMap { $0.parent }
        while let n = stack.popLast() {
            guard seen.insert(ObjectIdentifier(n)).inserted else { continue }
            out.append(n)
            for v in n.inputs where !stops.contains(ValueKey(v)) {
                if let p = v.parent, !seen.contains(ObjectIdentifier(p)) { stack.append(p) }
            }
        }
        out.sort { $0.sequence < $1.sequence }
        return out
    }

    /// The nodes behind the roots, after reporting any error a non-throwing setter deferred (`d = [..]` with
    /// the wrong count) on a root or on a value some node reads: the compiler's first pass.
    package static func checkedNodes(from roots: [Variable]) throws -> [FunctionNode] {
        for r in roots { try r.takePendingError() }
        let found = nodes(from: roots)
        for n in found { for v in n.inputs { try v.takePendingError() } }
        return found
    }

    /// Identity of a value: a leaf variable, or output `index` of a node.
    package enum ValueKey: Hashable {
        case leaf(ObjectIdentifier)
        case output(node: ObjectIdentifier, index: Int)

        package init(_ v: Variable) {
            if let p = v.parent { self = .output(node: ObjectIdentifier(p), index: v.outputIndex) }
            else { self = .leaf(ObjectIdentifier(v)) }
        }
    }

    /// A fingerprint of the graph behind the roots: changes when a node, a shape or a need-grad flag changes.
    package static func fingerprint(_ nodes: [FunctionNode], roots: [Variable]) -> [Int] {
        var f: [Int] = [nodes.count]
        for n in nodes {
            f.append(n.sequence)
            for v in n.inputs {
                f.append(v.sequence)
                f.append(v.needGrad ? 1 : 0)
                f.append(v.persistent ? 1 : 0)
                f.append(contentsOf: v.shape)
            }
            for case let o? in n.outputs { f.append(o.persistent ? 1 : 0) }
        }
        for r in roots { f.append(r.sequence) }
        return f
    }
}
