// Types of flamegraph.js (plain JavaScript so the HTML export can embed it unbuilt).
export interface FlameTree {
  n: number;
  parent: ArrayLike<number>;
  value: ArrayLike<number>;
  kids: number[][];
  depth: ArrayLike<number>;
  start: ArrayLike<number>;
  maxDepth: number;
}
export interface FlameOptions {
  label(n: number): string;
  colour(n: number): string;
  tooltip?(n: number): string[];
  more?(n: number, last: boolean, least: number): boolean;
  known?(n: number): number;
  maxDepth?: number;
  minShare?: number;
  onZoom?(n: number): void;
  onFocus?(n: number): void;
  onHover?(n: number): void;
  onPress?(n: number): void;
  ancestors?: boolean;
  rowHeight?: number;
}
export interface FlameGraph {
  canvas: HTMLCanvasElement;
  tip: HTMLElement;
  setTree(t: FlameTree | null, zoom?: number, grown?: boolean): void;
  zoomTo(n: number): void;
  grow(): void;
  setMatch(m: ((n: number) => boolean) | null): void;
  isMatch(n: number): boolean;
  redraw(): void;
  readonly zoom: number;
  readonly cursor: number;
  rects(): [number, number, number, number][];
  destroy(): void;
}
export function layoutTree(parent: ArrayLike<number>, value: ArrayLike<number>): FlameTree;
export function hashHue(s: string): number;
export function kindColour(kind: string, key: string): string;
export function fmtPct(x: number): string;
export function createFlameGraph(box: HTMLElement, opts: FlameOptions): FlameGraph;
