import Foundation

/// A layered (Sugiyama-style) drawing of a directed acyclic graph, computed in O((n + e + d) log n) for n
/// nodes, e edges and d bend points, so very large graphs need no dot layout.
///
/// Contract:
/// - Input: node sizes in points, in a meaningful order (the viewer passes schedule order, which breaks
///   ties), and edges as (tail, head) node indices. The graph must be acyclic; a bad index or a cycle throws
///   `LayeredLayoutError` naming the edge or a node on the cycle.
/// - Ranks: a node's rank is its longest-path depth from the sources, except that a source sits just above
///   its first consumer (a label input read only by the loss is drawn next to the loss, not at the top).
///   Every edge's head is at a strictly greater rank than its tail. Rank 0 is drawn at the top.
/// - Order and coordinates: ranks are placed top-down; each node wants the mean x of its predecessors
///   (a source: of its consumers' other inputs), nodes are ordered by that wish (ties by input order), and
///   the x closest to the wishes in least squares with at least `nodeSeparation` between neighbouring boxes
///   is found exactly by pool-adjacent-violators. Nodes in one rank never overlap; ranks are
///   `rankSeparation` apart.
/// - Edges: an edge spanning several ranks gets one bend per rank it crosses, placed like a thin node, and
///   runs vertically through that rank (a route point at the rank's top and bottom), so between its ends it
///   goes sideways only in the empty space between ranks and never crosses a box. Bends are capped at
///   `maxBendPoints` (shortest edges first); the rest are drawn straight. Routes start and end on the node
///   outlines (box or ellipse), aimed at the next point of the route.
/// - Output coordinates are in points with y upwards (Graphviz's convention), the drawing's lower-left
///   corner at (0, 0).
public struct LayeredLayout {
    public enum Shape: Sendable { case box, ellipse }

    public struct Node: Sendable {
        public var width: Double
        public var height: Double
        public var shape: Shape
        public init(width: Double, height: Double, shape: Shape = .box) {
            self.width = width
            self.height = height
            self.shape = shape
        }
    }

    public struct Point: Equatable, Sendable {
        public var x: Double
        public var y: Double
        public init(x: Double, y: Double) { self.x = x; self.y = y }
    }

    /// Rank of each node (0 at the top).
    public private(set) var rank: [Int]
    /// Centre of each node.
    public private(set) var center: [Point]
    /// Per edge, the polyline from the tail's outline through its bend points to the head's outline.
    public private(set) var routes: [[Point]]
    /// Size of the drawing.
    public private(set) var width: Double
    public private(set) var height: Double

    public static func compute(nodes: [Node], edges: [(tail: Int, head: Int)], nodeSeparation: Double = 18,
                               rankSeparation: Double = 36, bendWidth: Double = 6,
                               maxBendPoints: Int? = nil) throws -> LayeredLayout {
        let n = nodes.count
        for (k, e) in edges.enumerated() where !(0..<n).contains(e.tail) || !(0..<n).contains(e.head) {
            throw LayeredLayoutError.badEdge(index: k, tail: e.tail, head: e.head, nodeCount: n)
        }
        let rank = try ranks(n, edges)

        // Bend points: one per rank an edge crosses, shortest edges first while the budget lasts (a value read
        // by every function of a deep chain would otherwise need quadratically many).
        let budget = maxBendPoints ?? 4 * (n + edges.count) + 1000
        var demand = 0
        for e in edges { demand += rank[e.head] - rank[e.tail] - 1 }
        var bent = [Bool](repeating: true, count: edges.count)
        if demand > budget {
            let bySpan = edges.indices.sorted {
                (rank[edges[$0].head] - rank[edges[$0].tail], $0) < (rank[edges[$1].head] - rank[edges[$1].tail], $1)
            }
            var used = 0
            for k in bySpan {
                let need = rank[edges[k].head] - rank[edges[k].tail] - 1
                if used + need <= budget { used += need } else { bent[k] = false }
            }
        }

        // Layout items: the nodes, then the bend points. `pred` lists, per item, the items above it whose x it
        // follows: a bend point its previous point, a node the last point (or tail) of each incoming edge.
        var itemRank = rank
        var itemWidth = nodes.map(\.width)
        var pred = [[Int]](repeating: [], count: n)
        var succ = [[Int]](repeating: [], count: n)
        var bends = [[Int]](repeating: [], count: edges.count)
        for (k, e) in edges.enumerated() {
            var last = e.tail
            if bent[k] {
                for r in (rank[e.tail] + 1)..<rank[e.head] {
                    let b = itemRank.count
                    itemRank.append(r)
                    itemWidth.append(bendWidth)
                    pred.append([last])
                    succ.append([])
                    succ[last].append(b)
                    bends[k].append(b)
                    last = b
                }
            }
            pred[e.head].append(last)
            succ[last].append(e.head)
        }
        let items = itemRank.count
        let rankCount = (rank.max() ?? -1) + 1
        var byRank = [[Int]](repeating: [], count: rankCount)
        for i in 0..<items { byRank[itemRank[i]].append(i) }   // input order, then bend points by edge

        // x: rank by rank, top-down.
        var x = [Double](repeating: 0, count: items)
        var placed = [Bool](repeating: false, count: items)
        for r in 0..<rankCount {
            var wish = [Double?](repeating: nil, count: byRank[r].count)
            for (j, i) in byRank[r].enumerated() {
                if !pred[i].isEmpty {
                    wish[j] = pred[i].reduce(0) { $0 + x[$1] } / Double(pred[i].count)
                } else {
                    // A source: near the consumers' other inputs already placed.
                    var sum = 0.0, count = 0
                    for s in succ[i] { for p in pred[s] where placed[p] { sum += x[p]; count += 1 } }
                    if count > 0 { wish[j] = sum / Double(count) }
                }
            }
            // Order by wish (no wish: after the others), ties by input order.
            let order = byRank[r].indices.sorted { a, b in
                switch (wish[a], wish[b]) {
                case let (wa?, wb?): return wa != wb ? wa < wb : a < b
                case (_?, nil): return true
                case (nil, _?): return false
                case (nil, nil): return a < b
                }
            }
            var targets: [Double] = []
            var gaps: [Double] = []
            var previous = 0.0
            for (j, o) in order.enumerated() {
                let t = wish[o] ?? previous
                targets.append(t)
                previous = t
                gaps.append(j == 0 ? 0 : (itemWidth[byRank[r][order[j - 1]]] + itemWidth[byRank[r][o]]) / 2 + nodeSeparation)
            }
            let xs = closestSeparated(targets, gaps)
            for (j, o) in order.enumerated() {
                let i = byRank[r][o]
                x[i] = xs[j]
                placed[i] = true
            }
            byRank[r] = order.map { byRank[r][$0] }
        }

        // y: ranks as tall as their tallest node, `rankSeparation` apart, measured downwards first.
        var rankHeight = [Double](repeating: 0, count: rankCount)
        for i in 0..<n { rankHeight[rank[i]] = max(rankHeight[rank[i]], nodes[i].height) }
        var rankY = [Double](repeating: 0, count: rankCount)
        var y = 0.0
        for r in 0..<rankCount {
            if r > 0 { y += rankHeight[r - 1] / 2 + rankSeparation }
            y += rankHeight[r] / 2
            rankY[r] = y
        }
        let totalHeight = rankCount > 0 ? rankY[rankCount - 1] + rankHeight[rankCount - 1] / 2 : 0

        // Shift so the leftmost box starts at 0; flip y upwards.
        var minX = Double.infinity, maxX = -Double.infinity
        for i in 0..<items {
            minX = min(minX, x[i] - itemWidth[i] / 2)
            maxX = max(maxX, x[i] + itemWidth[i] / 2)
        }
        if items == 0 { minX = 0; maxX = 0 }
        let points = (0..<items).map { Point(x: x[$0] - minX, y: totalHeight - rankY[itemRank[$0]]) }
        let center = Array(points.prefix(n))

        // A bend runs vertically through its rank (top to bottom of the rank's tallest box), so an edge only
        // goes sideways in the empty space between ranks and never cuts through a box it passes.
        var routes: [[Point]] = []
        routes.reserveCapacity(edges.count)
        for (k, e) in edges.enumerated() {
            var route = [center[e.tail]]
            for b in bends[k] {
                let p = points[b], half = rankHeight[itemRank[b]] / 2
                route += half > 0 ? [Point(x: p.x, y: p.y + half), Point(x: p.x, y: p.y - half)] : [p]
            }
            route.append(center[e.head])
            route[0] = outline(nodes[e.tail], at: center[e.tail], towards: route[1])
            route[route.count - 1] = outline(nodes[e.head], at: center[e.head], towards: route[route.count - 2])
            routes.append(route)
        }
        return LayeredLayout(rank: rank, center: center, routes: routes, width: maxX - minX, height: totalHeight)
    }

    /// Longest-path ranks (Kahn's algorithm in input order), then each source moved down next to its
    /// first consumer, then shifted so the top rank is 0.
    static func ranks(_ n: Int, _ edges: [(tail: Int, head: Int)]) throws -> [Int] {
        var indegree = [Int](repeating: 0, count: n)
        var outs = [[Int]](repeating: [], count: n)
        for e in edges {
            indegree[e.head] += 1
            outs[e.tail].append(e.head)
        }
        var rank = [Int](repeating: 0, count: n)
        var remaining = indegree
        var queue = (0..<n).filter { indegree[$0] == 0 }
        var head = 0
        while head < queue.count {
            let v = queue[head]
            head += 1
            for w in outs[v] {
                rank[w] = max(rank[w], rank[v] + 1)
                remaining[w] -= 1
                if remaining[w] == 0 { queue.append(w) }
            }
        }
        if queue.count < n, let v = (0..<n).first(where: { remaining[$0] > 0 }) {
            throw LayeredLayoutError.cycle(node: v)
        }
        for v in 0..<n where indegree[v] == 0 && !outs[v].isEmpty {
            rank[v] = (outs[v].map { rank[$0] }.min() ?? 1) - 1
        }
        let top = rank.min() ?? 0
        return rank.map { $0 - top }
    }

    /// The xs closest to `targets` in least squares with xs[j] - xs[j-1] >= gaps[j]: substituting
    /// y[j] = xs[j] - (gaps[1] + ... + gaps[j]) leaves a non-decreasing fit, which pool-adjacent-violators
    /// solves exactly in linear time.
    static func closestSeparated(_ targets: [Double], _ gaps: [Double]) -> [Double] {
        var offset = [Double](repeating: 0, count: targets.count)
        for j in targets.indices where j > 0 { offset[j] = offset[j - 1] + gaps[j] }
        // Blocks of pooled values: (sum, count); a block's value is its mean.
        var sums: [Double] = [], counts: [Int] = []
        for j in targets.indices {
            sums.append(targets[j] - offset[j])
            counts.append(1)
            while sums.count > 1 {
                let last = sums.count - 1
                guard sums[last - 1] / Double(counts[last - 1]) > sums[last] / Double(counts[last]) else { break }
                sums[last - 1] += sums[last]
                counts[last - 1] += counts[last]
                sums.removeLast()
                counts.removeLast()
            }
        }
        var xs: [Double] = []
        xs.reserveCapacity(targets.count)
        for (s, c) in zip(sums, counts) {
            for _ in 0..<c { xs.append(s / Double(c) + offset[xs.count]) }
        }
        return xs
    }

    /// Where the segment from `c` (the node's centre) towards `p` leaves the node's outline.
    static func outline(_ node: Node, at c: Point, towards p: Point) -> Point {
        let dx = p.x - c.x, dy = p.y - c.y
        let a = node.width / 2, b = node.height / 2
        guard dx != 0 || dy != 0, a > 0, b > 0 else { return c }
        let t: Double
        switch node.shape {
        case .box:
            t = min(dx == 0 ? .infinity : a / abs(dx), dy == 0 ? .infinity : b / abs(dy))
        case .ellipse:
            t = 1 / ((dx / a) * (dx / a) + (dy / b) * (dy / b)).squareRoot()
        }
        let s = min(t, 1)
        return Point(x: c.x + dx * s, y: c.y + dy * s)
    }
}

/// Why a layered layout could not be computed.
public enum LayeredLayoutError: Error, CustomStringConvertible, Equatable {
    case badEdge(index: Int, tail: Int, head: Int, nodeCount: Int)
    case cycle(node: Int)

    public var description: String {
        switch self {
        case let .badEdge(k, t, h, n):
            return "layered layout: edge \(k) (\(t) -> \(h)) names a node outside 0..<\(n)"
        case let .cycle(v):
            return "layered layout: the graph has a cycle through node \(v); only acyclic graphs can be layered"
        }
    }
}
