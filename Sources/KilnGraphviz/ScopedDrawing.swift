import Foundation
import Kiln

/// The drawing `kiln view` makes by default (`SimpleGraph.scoped`): each module scope is a cluster, so a
/// label says only what its node is ("Convolution", "W"), never the scope around it again. With `compact`,
/// chains of functions with one consumer each become one box listing them, parameters are listed in their
/// function's line, values are edges, and a run of identical sibling blocks (a ResNet stage's blocks 1 and
/// 2) is drawn once with its repeat count, so a ResNet-20 fits on a screen.
extension SimpleGraph {
    /// One box of the drawing: a function, or (compact) a chain of them.
    struct Box {
        var members: [FunctionNode]
        var scope: [String]
    }

    /// A function's scope path: its name without the last component ("stage1/0/conv1/conv/Convolution" is in
    /// stage1/0/conv1/conv); a function named without a scope is at the top.
    static func scopePaths(_ nodes: [FunctionNode]) -> [ObjectIdentifier: [String]] {
        var paths: [ObjectIdentifier: [String]] = [:]
        for n in nodes { paths[ObjectIdentifier(n)] = Array(n.name.split(separator: "/").map(String.init).dropLast()) }
        return paths
    }

    /// Sibling blocks P/i, P/i+1, ... (consecutive indices, functions of the same types and arguments with
    /// parameters of the same shapes) that repeat the first of their run: each hidden block's functions map to
    /// the first's, and the run's count and index range label its cluster.
    static func repeatedBlocks(_ nodes: [FunctionNode], scopes: [ObjectIdentifier: [String]])
        -> (hidden: [ObjectIdentifier: FunctionNode], labels: [String: String]) {
        // Blocks in order of first appearance: (parent path, index) -> functions.
        var order: [[String]] = []
        var members: [[String]: [FunctionNode]] = [:]
        for n in nodes {
            let path = scopes[ObjectIdentifier(n)] ?? []
            guard let k = path.indices.first(where: { Int(path[$0]) != nil }) else { continue }
            let block = Array(path.prefix(k + 1))
            if members[block] == nil { order.append(block) }
            members[block, default: []].append(n)
        }
        func signature(_ block: [String]) -> [String] {
            (members[block] ?? []).map { n in
                let rel = (scopes[ObjectIdentifier(n)] ?? []).dropFirst(block.count).joined(separator: "/")
                let params = n.inputs.filter(isParameter).map { "\($0.shape)" }.joined(separator: ";")
                return "\(rel)|\(n.typeName)|\(n.function.arguments.map { "\($0.0)=\($0.1)" }.joined(separator: ","))|\(params)"
            }
        }
        var hidden: [ObjectIdentifier: FunctionNode] = [:]
        var labels: [String: String] = [:]
        var i = 0
        while i < order.count {
            let first = order[i], parent = first.dropLast()
            let sig = signature(first)
            var j = i + 1
            while j < order.count, order[j].dropLast() == parent, Int(order[j].last!) == Int(order[j - 1].last!)! + 1,
                  signature(order[j]) == sig {
                j += 1
            }
            if j - i >= 2 {
                for b in order[(i + 1)..<j] {
                    for (h, r) in zip(members[b] ?? [], members[first] ?? []) { hidden[ObjectIdentifier(h)] = r }
                }
                labels[first.joined(separator: "/")] = "\(first.last!)...\(order[j - 1].last!)  (x\(j - i), drawn once)"
            }
            i = j
        }
        return (hidden, labels)
    }

    func scopedDigraph(_ roots: [Variable], format: String) throws -> Digraph {
        let nodes = SimpleGraph.functionNodes(from: roots)
        let paths = SimpleGraph.scopePaths(nodes)
        let (hidden, clusterLabels) = compact ? SimpleGraph.repeatedBlocks(nodes, scopes: paths) : ([:], [:])
        let drawn = nodes.filter { hidden[ObjectIdentifier($0)] == nil }
        // The function standing for each function (itself, or its counterpart in a block drawn once).
        func shown(_ n: FunctionNode) -> FunctionNode { hidden[ObjectIdentifier(n)] ?? n }

        // Consumers of each drawn function's outputs, among drawn functions (mapped through `shown`).
        var consumers: [ObjectIdentifier: Set<ObjectIdentifier>] = [:]
        for n in nodes {
            for v in n.inputs {
                guard let p = v.parent else { continue }
                let (from, to) = (shown(p), shown(n))
                if from !== to { consumers[ObjectIdentifier(from), default: []].insert(ObjectIdentifier(to)) }
            }
        }
        let rootProducers = Set(roots.compactMap { $0.parent.map { ObjectIdentifier(shown($0)) } })

        // Boxes: compact chains merge a function into its producer's box when it is that box's last
        // function's only consumer, has only that one non-parameter input, and shares its cluster.
        var boxes: [Box] = []
        var boxOf: [ObjectIdentifier: Int] = [:]
        for n in drawn {
            let scope = paths[ObjectIdentifier(n)] ?? []
            let dataInputs = n.inputs.filter { !SimpleGraph.isParameter($0) }
            if compact, dataInputs.count == 1, let p = dataInputs[0].parent.map(shown), let b = boxOf[ObjectIdentifier(p)],
               boxes[b].members.last === p, consumers[ObjectIdentifier(p)]?.count == 1, !rootProducers.contains(ObjectIdentifier(p)),
               p.outputTypes.count == 1, Array(scope.prefix(boxes[b].scope.count)) == boxes[b].scope {
                boxes[b].members.append(n)
                boxOf[ObjectIdentifier(n)] = b
                continue
            }
            boxOf[ObjectIdentifier(n)] = boxes.count
            // A box sits in its block's cluster (compact) or its function's own scope.
            let blockDepth = scope.indices.first(where: { Int(scope[$0]) != nil }).map { $0 + 1 } ?? scope.count
            boxes.append(Box(members: [n], scope: compact ? Array(scope.prefix(blockDepth)) : scope))
        }

        let g = try Digraph(name: "kiln", format: format)
        SimpleGraph.setDefaults(g)
        g.setGraphAttribute("rankdir", leftToRight ? "LR" : "TB")
        g.setGraphAttribute("fontname", "Helvetica")
        g.setGraphAttribute("fontsize", "11")
        g.setGraphAttribute("ranksep", compact ? "0.25" : "0.35")
        g.setGraphAttribute("nodesep", "0.25")
        let clusterStyle: [(String, String)] = [("style", "rounded"), ("color", "#8a94a6"), ("fontcolor", "#2d3748"), ("labeljust", "l")]

        func valueID(_ v: Variable) -> String { SimpleGraph.variableID(v) }
        func boxID(_ b: Int) -> String { "f\(boxes[b].members[0].sequence)" }
        for (b, box) in boxes.enumerated() {
            var lines: [String] = []
            for n in box.members {
                let scope = paths[ObjectIdentifier(n)] ?? []
                let rel = scope.dropFirst(box.scope.count).joined(separator: "/")
                let base = n.name.split(separator: "/").last.map(String.init) ?? n.typeName
                var line = base == n.typeName || base.isEmpty ? n.typeName : "\(base) (\(n.typeName))"
                if !rel.isEmpty { line = "\(rel): " + line }
                if compact {
                    let params = n.inputs.filter(SimpleGraph.isParameter).map { p -> String in
                        let short = p.name.split(separator: "/").last.map(String.init) ?? "param"
                        return verbose ? "\(short) \(SimpleGraph.shapeText(p.shape))" : short
                    }
                    if !params.isEmpty { line += " [" + params.joined(separator: ", ") + "]" }
                }
                lines.append(line)
                if verbose { for (k, v) in n.function.arguments { lines.append("  \(k)=\(v)") } }
            }
            let fill = functionColor(box.members[0].typeName)
            // Several lines are left-aligned ("\\l" ends each), one is centred.
            let label = lines.count > 1 ? lines.map(labelText).joined(separator: "\\l") + "\\l" : labelLines(lines)
            g.node(boxID(b), [("label", label), ("shape", "box"), ("style", "filled,rounded"),
                              ("fillcolor", fill), ("color", fill), ("fontcolor", SimpleGraph.fontColor(for: fill)),
                              ("tooltip", box.members.map(\.name).joined(separator: " -> "))])
            g.place(boxID(b), in: g.cluster(box.scope, labels: clusterLabels, style: clusterStyle))
        }

        // Values: leaves (inputs, and parameters unless compact) as nodes; intermediate values as edges
        // (compact) or nodes.
        var drawnValues = Set<String>()
        func leafNode(_ v: Variable, near box: Int) -> String {
            let id = valueID(v)
            if drawnValues.insert(id).inserted {
                let style = variableStyle(v, type: v.type, needGrad: v.needGrad, scopes: Scopes())
                var attrs = style.attributes
                let short = v.name.split(separator: "/").last.map(String.init) ?? v.name
                attrs.append(("label", labelLines([short.isEmpty ? "x" : short] + (verbose ? [SimpleGraph.shapeText(v.shape)] : []))))
                attrs.append(("fontcolor", SimpleGraph.fontColor(for: attrs.last { $0.0 == "fillcolor" }?.1 ?? "white")))
                g.node(id, attrs)
                if SimpleGraph.isParameter(v) { g.place(id, in: g.cluster(boxes[box].scope, labels: clusterLabels, style: clusterStyle)) }
            }
            return id
        }
        var edges = Set<String>()
        for n in nodes {
            guard let b = boxOf[ObjectIdentifier(shown(n))] else { continue }
            for v in n.inputs {
                if let p = v.parent {
                    guard let pb = boxOf[ObjectIdentifier(shown(p))], pb != b else { continue }
                    // From one block of a run drawn once to the next: the repetition the cluster's count says.
                    let repeats = hidden[ObjectIdentifier(p)] != nil || hidden[ObjectIdentifier(n)] != nil
                    if repeats && boxes[pb].scope == boxes[b].scope { continue }
                    let key = "\(pb)->\(b)"
                    guard edges.insert(key).inserted else { continue }
                    g.edge(boxID(pb), boxID(b), verbose ? [("label", SimpleGraph.shapeText(v.shape))] : [])
                } else if compact && SimpleGraph.isParameter(v) {
                    continue
                } else {
                    let id = leafNode(v, near: b)
                    if edges.insert("\(id)->\(b)").inserted { g.edge(id, boxID(b)) }
                }
            }
        }
        for (k, r) in roots.enumerated() {
            let id = "out\(k)"
            g.node(id, [("label", labelLines([r.name.isEmpty ? "output" : r.name] + (verbose ? [SimpleGraph.shapeText(r.shape)] : []))),
                        ("shape", "ellipse"), ("fillcolor", "lightgray"), ("color", "lightgray"), ("fontcolor", "black")])
            if let p = r.parent, let b = boxOf[ObjectIdentifier(shown(p))] { g.edge(boxID(b), id) } else { g.edge(leafNode(r, near: 0), id) }
        }
        return g
    }
}
