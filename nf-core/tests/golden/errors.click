//// unknown class with a suggestion
c :: Countr;
InfiniteSource -> c -> Discard;
//// a bare name that is neither an element nor a class
InfiniteSource -> foo;
//// a bad argument value
InfiniteSource -> Strip(abc) -> Discard;
//// a misspelt keyword
InfiniteSource(LIMTI 5) -> Discard;
//// an output left unconnected
c :: Counter;
InfiniteSource -> c;
//// a push output connected twice
s :: InfiniteSource;
s -> Discard;
s -> Discard;
//// push connected to pull
InfiniteSource -> Unqueue -> Discard;
//// a cycle without a queue
t :: Tee(2);
InfiniteSource -> c :: Counter -> t;
t[0] -> c;
t[1] -> Discard;
//// a syntax error
a :: Counter -> -> Discard;
//// an unclosed argument list
InfiniteSource(LIMIT 5 -> Discard;
//// an undefined variable
InfiniteSource(LIMIT $N) -> Discard;
//// an element declared twice
a :: Counter;
a :: Discard;
//// an output port that does not exist
c :: Classifier(12/0800, -);
InfiniteSource -> c;
c[0] -> Discard;
c[1] -> Discard;
c[2] -> Discard;
//// a bad IPClassifier expression
InfiniteSource -> IPClassifier(tcp dst port http2) -> Discard;
//// a compound class given the wrong number of arguments
elementclass Two { $a, $b | input -> Paint($a) -> Paint($b) -> output }
InfiniteSource -> Two(1) -> Discard;
//// a pull output connected twice
q :: Queue;
InfiniteSource -> q;
q -> Unqueue -> Discard;
q -> Unqueue -> Discard;
//// several errors at once
InfiniteSource -> Strip(-1) -> Paint(300) -> Discard;
//// an unterminated comment
InfiniteSource -> Discard; /* never closed
